"""Curating the labels: one training run end to end and the request for it (`training_run`),
out-of-fold predictions (`out_of_fold`), right/wrong sets (`right_wrong`), label issues
(`label_issues`), pruning or fixing flagged labels (`wrong_labels`), the clean-label oracle
(`oracle`), the strategies as data (`strategies`), relabeling (`relabel`), proposals without a
differentiator (`proposals`) and the comparison with its verdict (`compare`)."""

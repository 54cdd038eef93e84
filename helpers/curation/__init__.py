"""Curating the labels: right/wrong sets (`right_wrong`), out-of-fold predictions (`out_of_fold`),
label issues (`label_issues`), one training run end to end (`training_run`), the strategies as data
(`strategies`), relabeling (`relabel`), proposals without a differentiator (`proposals`) and the
comparison with its verdict (`compare`)."""

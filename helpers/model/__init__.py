"""Networks (`networks`: ResNets from torch.nn), augmentation (`augment`), the training settings
(`settings`: the parameter table's training rows and `TrainConfig`), the training loop (`training`),
checkpoints (`checkpoints`), prediction (`inference`) and the saved model bundle (`bundle`:
model_perf.zip)."""

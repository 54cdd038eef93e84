"""Networks (`networks`: ResNets from torch.nn), the training loop (`training`), prediction
(`inference`) and the saved model bundle (`bundle`: model_perf.zip)."""

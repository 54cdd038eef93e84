"""Predicting with a trained model: BatchNorm folded into the convolutions, `torch.inference_mode`,
channels-last batches read straight from the (memory-mapped) image array; measured faster on CPU
(benchmarks/train_speed.py)."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.columns import output_column
from .networks import ResNet

EVAL_BATCH_SIZE = 512  # measured faster and lighter than 1024-2048 on CPU (benchmarks/train_speed.py)


def to_tensor(batch: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 (0-255) or float32 (0-1) images -> float32 0-1 tensor on `device`."""
    if not batch.flags.writeable:  # a slice of a read-only memmap: copy this one batch
        batch = np.array(batch)
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def inference_copy(model: ResNet) -> ResNet:
    """An eval-mode copy with every BatchNorm folded into the convolution before it."""
    folded = copy.deepcopy(model).eval()

    def fold(module: nn.Module) -> None:
        for name, child in module.named_children():
            fold(child)
        convs = {n: m for n, m in module.named_children() if isinstance(m, nn.Conv2d)}
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            bn = getattr(module, bn_name, None)
            if conv_name in convs and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(convs[conv_name], bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i in range(len(items) - 1):
                if isinstance(items[i], nn.Conv2d) and isinstance(items[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(items[i], items[i + 1])
                    module[i + 1] = nn.Identity()

    with torch.no_grad():
        fold(folded)
    return folded


def predict_logits(model: nn.Module, images: np.ndarray, rows: np.ndarray | None, device: torch.device,
                   batch_size: int = EVAL_BATCH_SIZE, features: bool = False) -> torch.Tensor:
    """Logits (or penultimate features) of the given rows (all rows when None), in row order."""
    model = model.to(device, memory_format=torch.channels_last).eval()
    n = len(images) if rows is None else len(rows)
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size] if rows is None else images[rows[start:start + batch_size]]
            x = to_tensor(batch, device, channels_last=True)
            out.append((model.features(x) if features else model(x)).float().cpu())
    width = model.n_features if features else model.fc.out_features
    return torch.cat(out) if out else torch.zeros(0, width)


def predict_probabilities(model: ResNet, images: np.ndarray, device: torch.device | str = "cpu",
                          batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Softmax outputs of every image, (N, classes)."""
    logits = predict_logits(inference_copy(model), images, None, torch.device(device), batch_size)
    return torch.softmax(logits, 1).numpy()


def predict_features(model: ResNet, images: np.ndarray, device: torch.device | str = "cpu",
                     batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Penultimate-layer features of every image, (N, features)."""
    return predict_logits(inference_copy(model), images, None, torch.device(device), batch_size, features=True).numpy()


def predictions_frame(ann: pd.DataFrame, probs: np.ndarray, class_names: list[str], split: np.ndarray) -> pd.DataFrame:
    """All input rows and columns + one `<class> output` column per class + `split`."""
    out = ann.copy()
    for i, name in enumerate(class_names):
        out[output_column(name)] = probs[:, i]
    out["split"] = split
    return out

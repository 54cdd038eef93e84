"""Predicting with a trained model: BatchNorm folded into the convolutions, `torch.inference_mode`,
channels-last batches read straight from the (memory-mapped) image array; measured faster on CPU
(benchmarks/train_speed.py)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.columns import output_column
from .augment import symmetries, symmetry
from .networks import ResNet, memory_format

EVAL_BATCH_SIZE = 512  # measured faster and lighter than 1024-2048 on CPU (benchmarks/train_speed.py)


def to_tensor(batch: np.ndarray, device: torch.device, fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (0-255) or float32 (0-1) images -> float32 0-1 tensor on `device`, in memory format `fmt`."""
    if not batch.flags.writeable:  # a slice of a read-only memmap: copy this one batch
        batch = np.array(batch)
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=fmt)


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
                   batch_size: int = EVAL_BATCH_SIZE, *, features: bool = False, view: int = 0) -> torch.Tensor:
    """Logits (or penultimate features) of the given rows (all rows when None), in row order, of
    the images under symmetry `view` (0: as they are)."""
    fmt = memory_format(model.spec.width, device)
    model = model.to(device, memory_format=fmt).eval()
    n = len(images) if rows is None else len(rows)
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size] if rows is None else images[rows[start:start + batch_size]]
            x = to_tensor(batch, device, fmt)
            if view:
                x = symmetry(x, view).contiguous(memory_format=fmt)
            out.append((model.features(x) if features else model(x)).float().cpu())
    width = model.n_features if features else model.fc.out_features
    return torch.cat(out) if out else torch.zeros(0, width)


def view_logits(model: ResNet, images: np.ndarray, rows: np.ndarray | None, device: torch.device | str = "cpu",
                batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits of every view the model predicts from, (views, N, classes): the image itself, or with
    test-time augmentation every symmetry of it. `model` should be an inference copy."""
    views = symmetries(*images.shape[2:]) if model.spec.tta else [0]
    return torch.stack([predict_logits(model, images, rows, torch.device(device), batch_size, view=v) for v in views])


def probabilities_of(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Softmax outputs from view_logits: the mean over the views, at a temperature."""
    return torch.softmax(logits / temperature, dim=-1).mean(dim=0).numpy()


def best_temperature(logits: torch.Tensor, targets: np.ndarray) -> float:
    """The softmax temperature minimising the negative log-likelihood of `targets` (class indices)
    under `logits` (views, N, classes): temperature scaling (Guo et al. 2017)."""
    rows = np.arange(len(targets))

    def nll(log_t: float) -> float:
        probs = probabilities_of(logits, math.exp(log_t))
        return float(-np.log(np.clip(probs[rows, targets], 1e-12, 1)).mean())

    return math.exp(minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded").x)


def predict_probabilities(model: ResNet, images: np.ndarray, device: torch.device | str = "cpu",
                          batch_size: int = EVAL_BATCH_SIZE, rows: np.ndarray | None = None) -> np.ndarray:
    """Softmax outputs (N, classes) of every image (or of `rows`), as the model's spec says:
    its temperature, and the mean over the symmetries with test-time augmentation."""
    logits = view_logits(inference_copy(model), images, rows, device, batch_size)
    return probabilities_of(logits, model.spec.temperature)


def ensemble_probabilities(models: list[ResNet], images: np.ndarray, device: torch.device | str = "cpu",
                           batch_size: int = EVAL_BATCH_SIZE, rows: np.ndarray | None = None) -> np.ndarray:
    """The mean of predict_probabilities over `models` (one model: its own outputs)."""
    return np.mean([predict_probabilities(m, images, device, batch_size, rows) for m in models], axis=0)


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

"""Predicting with a trained model: BatchNorm folded into the convolutions, `torch.inference_mode`,
channels-last batches read straight from the (memory-mapped) image array or from a copy kept on the
device (helpers.model.batches), each batch read once for all its test-time views; measured faster on
CPU (benchmarks/train_speed.py). On CUDA the views of a batch go through the network together, and
`amp` predicts under bf16 autocast."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.columns import output_column
from .augment import symmetries, symmetry
from .batches import Images, image_batch
from .networks import ResNet, memory_format

EVAL_BATCH_SIZE = 512  # measured faster and lighter than 1024-2048 on CPU (benchmarks/train_speed.py)


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


def predict_logits(model: nn.Module, images: Images, rows: np.ndarray | None, device: torch.device,
                   batch_size: int = EVAL_BATCH_SIZE, *, features: bool = False, views: Sequence[int] = (0,),
                   amp: bool = False) -> torch.Tensor:
    """Logits (or penultimate features) of the given rows (all rows when None), in row order, under
    each symmetry in `views` (0: the image as it is): (views, N, width)."""
    width = model.n_features if features else model.fc.out_features
    parts = list(_view_passes(model, images, rows, device, batch_size, views, amp,
                              model.features if features else model))
    return torch.cat(parts, dim=1) if parts else torch.zeros(len(views), 0, width)


def logits_and_features(model: ResNet, images: Images, device: torch.device | str = "cpu",
                        batch_size: int = EVAL_BATCH_SIZE, *, view_mean: bool = False,
                        amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """view_logits (views, N, classes) and the penultimate features (N, features) of the image as it
    is, or with `view_mean` averaged over the same views, from one pass: the logits are the model's
    head on those features, as its forward computes them. `model` should be an inference copy."""
    n_features = model.n_features

    def both(x: torch.Tensor) -> torch.Tensor:
        f = model.features(x)
        return torch.cat([f, model.fc(f)], dim=1)

    views = model_views(model, images)
    own = views.index(0)  # the image as it is
    logits, features = [torch.zeros(len(views), 0, model.fc.out_features)], [torch.zeros(0, n_features)]
    for out in _view_passes(model, images, None, torch.device(device), batch_size, views, amp, both):
        logits.append(out[..., n_features:])  # each batch's features reduced at once: (views, N, features) never held
        features.append(out[..., :n_features].mean(dim=0) if view_mean else out[own, :, :n_features])
    return torch.cat(logits, dim=1), torch.cat(features)


def _view_passes(model: nn.Module, images: Images, rows: np.ndarray | None, device: torch.device, batch_size: int,
                 views: Sequence[int], amp: bool, forward: Callable[[torch.Tensor], torch.Tensor]
                 ) -> Iterator[torch.Tensor]:
    """`forward` of each batch under every view, (views, batch, width) float32 on the CPU: each batch is
    read once for all its views."""
    fmt = memory_format(model.spec.width, device)
    model.to(device, memory_format=fmt).eval()
    n = len(images) if rows is None else len(rows)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp and device.type == "cuda"):
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size) if rows is None else rows[start:start + batch_size]
            x = image_batch(images, part, device, fmt)
            viewed = [symmetry(x, v).contiguous(memory_format=fmt) if v else x for v in views]
            if device.type == "cuda":  # one large forward pass keeps the GPU busy; on the CPU it gains nothing
                yield forward(torch.cat(viewed)).float().reshape(len(views), len(x), -1).cpu()
            else:
                yield torch.stack([forward(v).float() for v in viewed])


def view_logits(model: ResNet, images: Images, rows: np.ndarray | None, device: torch.device | str = "cpu",
                batch_size: int = EVAL_BATCH_SIZE, *, amp: bool = False) -> torch.Tensor:
    """Logits of every view the model predicts from, (views, N, classes): the image itself, or with
    test-time augmentation every symmetry of it. `model` should be an inference copy."""
    return predict_logits(model, images, rows, torch.device(device), batch_size, views=model_views(model, images), amp=amp)


def model_views(model: ResNet, images: Images) -> list[int]:
    """The symmetries a model predicts from: with test-time augmentation every one that keeps the
    images' shape (or the first `tta_views` of them), else the image itself."""
    if not model.spec.tta:
        return [0]
    views = symmetries(*images.shape[2:])
    return views[:model.spec.tta_views] if model.spec.tta_views else views


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


def predict_probabilities_and_features(model: ResNet, images: Images, device: torch.device | str = "cpu",
                                       batch_size: int = EVAL_BATCH_SIZE, *, view_mean: bool = False,
                                       amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """predict_probabilities and predict_features(view_mean=...) of every image, from one pass."""
    logits, features = logits_and_features(inference_copy(model), images, device, batch_size, view_mean=view_mean,
                                           amp=amp)
    return probabilities_of(logits, model.spec.temperature), features.numpy()


def predict_probabilities(model: ResNet, images: Images, device: torch.device | str = "cpu",
                          batch_size: int = EVAL_BATCH_SIZE, rows: np.ndarray | None = None, *,
                          amp: bool = False) -> np.ndarray:
    """Softmax outputs (N, classes) of every image (or of `rows`), as the model's spec says:
    its temperature, and the mean over the symmetries with test-time augmentation."""
    logits = view_logits(inference_copy(model), images, rows, device, batch_size, amp=amp)
    return probabilities_of(logits, model.spec.temperature)


def ensemble_probabilities(models: list[ResNet], images: Images, device: torch.device | str = "cpu",
                           batch_size: int = EVAL_BATCH_SIZE, rows: np.ndarray | None = None, *,
                           amp: bool = False) -> np.ndarray:
    """The mean of predict_probabilities over `models` (one model: its own outputs)."""
    if len(models) == 1:
        return predict_probabilities(models[0], images, device, batch_size, rows, amp=amp)
    return np.mean([predict_probabilities(m, images, device, batch_size, rows, amp=amp) for m in models], axis=0)


def predict_features(model: ResNet, images: Images, device: torch.device | str = "cpu",
                     batch_size: int = EVAL_BATCH_SIZE, *, view_mean: bool = False) -> np.ndarray:
    """Penultimate-layer features of every image, (N, features); with `view_mean`, their mean over the
    views the model predicts from (model_views), the same for an image and any symmetry of it."""
    views = model_views(model, images) if view_mean else [0]
    features = predict_logits(inference_copy(model), images, None, torch.device(device), batch_size, features=True,
                              views=views)
    return features.mean(dim=0).numpy()


def predictions_frame(ann: pd.DataFrame, probs: np.ndarray, class_names: list[str], split: np.ndarray) -> pd.DataFrame:
    """All input rows and columns + one `<class> output` column per class + `split`."""
    out = ann.copy()
    for i, name in enumerate(class_names):
        out[output_column(name)] = probs[:, i]
    out["split"] = split
    return out

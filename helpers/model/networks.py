"""ResNets for small multi-channel crops, built from torch.nn (torchvision is not used).

The default is the origin network (the pipeline's original user's): ResNet-18 whose stem is a 3x3, stride-1 conv from
C channels to `width` (64 in the origin), then BN, ReLU and the usual max-pool, four stages,
global average pooling and a linear layer to the classes. Per-channel normalisation is part of
the model (buffers saved in its state_dict), so a saved model takes raw 0-1 images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.checks import check_value, choice, integer
from ..core.errors import ParameterError


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


def memory_format(width: int, device: torch.device) -> torch.memory_format:
    """channels_last (measured faster), except where oneDNN's CPU convolution backward crashes the
    process: networks narrower than 16 channels on 31x31 crops with 2 threads (torch 2.13; odd batch
    sizes; tests/test_reliability.py reproduces it in a subprocess)."""
    return torch.channels_last if device.type == "cuda" or width >= 16 else torch.contiguous_format


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model (saved as model_spec.json)."""

    arch: str
    in_channels: int
    class_names: list[str]
    class_values: list[int]
    width: int = 64
    image_size: list[int] = field(default_factory=list)
    tta: bool = False  # predict as the mean output over the image's symmetries
    tta_views: int = 0  # with tta: the first this many symmetries (the quarter turns first); 0 = every one
    temperature: float = 1.0  # logits are divided by it before the softmax (fitted on validation rows)

    def __post_init__(self) -> None:
        check_value("arch", choice(*sorted(ARCHS)), self.arch)
        check_value("width", integer(4), self.width)
        if self.in_channels < 1:
            raise ParameterError("in_channels", f"must be >= 1, got {self.in_channels}")
        if len(self.class_names) < 2 or len(self.class_names) != len(self.class_values):
            raise ParameterError("classes", f"need at least two classes, got {self.class_names}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        optional = {k: data[k] for k in ("tta", "tta_views", "temperature") if k in data}  # older bundles lack them
        return cls(**{k: data[k] for k in ("arch", "in_channels", "class_names", "class_values", "width", "image_size")},
                   **optional)


class ResNet(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        block, layers = ARCHS[spec.arch]
        self.spec = spec  # how it predicts: test-time augmentation, temperature
        w = spec.width
        self.register_buffer("mean", torch.zeros(1, spec.in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, spec.in_channels, 1, 1))
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, in_planes = [], w
        for i, n_blocks in enumerate(layers):
            planes = w * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, spec.n_classes)
        self.n_features = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(self.mean))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6).view_as(self.std))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features of 0-1 images."""
        x = (x - self.mean) / self.std
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_model(spec: ModelSpec) -> ResNet:
    return ResNet(spec)


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU (a snapshot: training on goes on without changing it)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

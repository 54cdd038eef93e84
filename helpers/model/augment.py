"""Augmentation for crops with no up or down: the 8 symmetries of the square (4 rotations by 90
degrees, each optionally mirrored), and small shifts; and MixUp. Done per batch on tensors, on the
batch's device, so it costs little next to the forward pass."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTS = ("none", "flips_rot90", "flips_rot90_shift")
MAX_SHIFT = 2  # pixels; a 31-pixel crop's cell stays in view
# The strong view's changes, on the 0-1 scale: what another slide's stain, brightness and camera do
STRONG_GAIN, STRONG_OFFSET, STRONG_NOISE = 0.25, 0.08, 0.04


def symmetries(height: int, width: int) -> list[int]:
    """The symmetry codes that keep an image's shape: all 8 for a square, else the 4 without a quarter turn."""
    return list(range(8)) if height == width else [0, 2, 4, 6]


def symmetry(x: torch.Tensor, code: int) -> torch.Tensor:
    """Symmetry `code` (0-7) of a batch (N, C, H, W): `code % 4` quarter turns, mirrored when code >= 4."""
    y = torch.rot90(x, code % 4, dims=(2, 3)) if code % 4 else x
    return y.flip(3) if code >= 4 else y


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch under a random symmetry (and with `..._shift`, a shift of up to
    MAX_SHIFT pixels, edges replicated). `generator` (on the CPU) makes it reproducible."""
    if mode == "none":
        return x
    allowed = torch.tensor(symmetries(*x.shape[2:]))
    codes = allowed[torch.randint(0, len(allowed), (len(x),), generator=generator)]
    out = torch.empty_like(x)
    for code in codes.unique().tolist():
        rows = (codes == code).nonzero().squeeze(1).to(x.device)
        out[rows] = symmetry(x[rows], code)
    if mode == "flips_rot90_shift":
        out = random_shift(out, MAX_SHIFT, generator)
    return out.contiguous(memory_format=torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                          and not x.is_contiguous() else torch.contiguous_format)  # as the input came


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to `max_shift` pixels in each direction, the border replicated."""
    h, w = x.shape[2:]
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=generator)
    out = torch.empty_like(x)
    for dy, dx in offsets.unique(dim=0).tolist():
        rows = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).nonzero().squeeze(1).to(x.device)
        out[rows] = padded[rows, :, dy:dy + h, dx:dx + w]
    return out


def strong_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """FixMatch's strong view of a batch of crops: a random symmetry and shift, then what differs
    between slides but not between classes: each channel's gain (stain, up to +-STRONG_GAIN) and
    offset (brightness), and pixel noise. No cutout: a parasite is a few pixels, and cutting them
    out would change the class."""
    x = augment_batch(x, "flips_rot90_shift", generator)
    n, c = x.shape[:2]
    gain = 1 + STRONG_GAIN * (2 * torch.rand((n, c, 1, 1), generator=generator) - 1)
    offset = STRONG_OFFSET * (2 * torch.rand((n, c, 1, 1), generator=generator) - 1)
    noise = STRONG_NOISE * torch.randn(tuple(x.shape), generator=generator)
    return x * gain.to(x.device) + offset.to(x.device) + noise.to(x.device)


@dataclass(frozen=True)
class Mix:
    """One batch's MixUp: each row became `share` of itself and 1 - share of row `partner` (Zhang et al. 2018)."""
    share: float
    partner: torch.Tensor  # a permutation of the batch's rows, on its device


def draw_mix(n_rows: int, alpha: float, rng: np.random.Generator, device: torch.device) -> Mix:
    """The proportion from Beta(alpha, alpha) and a random partner for each of `n_rows` rows."""
    return Mix(float(rng.beta(alpha, alpha)), torch.from_numpy(rng.permutation(n_rows)).to(device))


def mix_inputs(x: torch.Tensor, mix: Mix) -> torch.Tensor:
    """The batch mixed with its partners' rows in the drawn proportion."""
    return mix.share * x + (1 - mix.share) * x[mix.partner]

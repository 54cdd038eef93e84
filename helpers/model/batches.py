"""Image batches as float 0-1 tensors on the training device: read per batch from the (memory-mapped)
array, or indexed from a copy of the whole set kept on the device.

A GPU spends most of a small network's step waiting for a host-to-device copy per batch; keeping the
uint8 set there (a million 4x31x31 crops are 3.8 GB) removes that copy, and a fit's fold models share
one copy. Both ways give the same batches, so the same seed gives the same model.
"""
from __future__ import annotations

import weakref

import numpy as np
import torch

IMAGES_ON_DEVICE = ("auto", "yes", "no")
DEVICE_SHARE = 0.5  # auto: keep the set on a GPU when it takes at most this share of its free memory
COPY_ROWS = 65_536  # rows copied to the device at a time, so the host never holds more than this


def to_tensor(batch: np.ndarray, device: torch.device, fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (0-255) or float32 (0-1) images -> float32 0-1 tensor on `device`, in memory format `fmt`."""
    if not batch.flags.writeable:  # a slice of a read-only memmap: copy this one batch
        batch = np.array(batch)
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    return _as_float(x).contiguous(memory_format=fmt)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


class DeviceImages:
    """An image array copied once onto a device, in its own dtype; `batch(rows)` indexes it there."""

    def __init__(self, images: np.ndarray, device: torch.device):
        self.shape, self.dtype = tuple(images.shape), images.dtype
        self.store = torch.empty(self.shape, dtype=torch.uint8 if images.dtype == np.uint8 else torch.float32, device=device)
        for start in range(0, len(images), COPY_ROWS):
            self.store[start:start + COPY_ROWS] = torch.from_numpy(np.array(images[start:start + COPY_ROWS]))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def device(self) -> torch.device:
        return self.store.device

    def batch(self, rows: np.ndarray | slice, fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """The rows (indices or a slice) as float 0-1 images on the device."""
        x = self.store[rows] if isinstance(rows, slice) else self.store.index_select(
            0, torch.from_numpy(np.asarray(rows, np.int64)).to(self.device))
        return _as_float(x).contiguous(memory_format=fmt)


Images = np.ndarray | DeviceImages


def image_batch(images: Images, rows: np.ndarray | slice, device: torch.device,
                fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Rows of either kind of image set as a float 0-1 batch on `device`."""
    if isinstance(images, DeviceImages):
        return images.batch(rows, fmt)
    return to_tensor(images[rows], device, fmt)


def fits_on_device(images: np.ndarray, device: torch.device) -> bool:
    """auto's rule: a CUDA device whose free memory is at least 1 / DEVICE_SHARE times the set's size."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return images.nbytes <= DEVICE_SHARE * free


_RESIDENT: dict[tuple[int, str], tuple[weakref.ref, DeviceImages]] = {}


def on_device(images: Images, device: torch.device, policy: str = "auto") -> Images:
    """The images to train and predict from: a copy kept on `device` where `policy` asks for one
    ("yes"; "auto": on a GPU it fits on, see fits_on_device), else the array itself. The copy of the
    last array asked for is kept, so a fit's folds and predictions share it."""
    if isinstance(images, DeviceImages) or policy == "no" or (policy == "auto" and not fits_on_device(images, device)):
        return images
    key = (id(images), str(device))
    kept = _RESIDENT.get(key)
    if kept is not None and kept[0]() is images:
        return kept[1]
    _RESIDENT.clear()  # one set at a time: its memory goes back before the next one is copied
    resident = DeviceImages(images, device)
    _RESIDENT[key] = (weakref.ref(images), resident)
    return resident


def release_device_images() -> None:
    """Drop the kept copy (its device memory returns to the allocator)."""
    _RESIDENT.clear()

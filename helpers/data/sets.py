"""Image sets on disk: a `.npy` of shape (N, C, H, W) plus an annotation CSV, row i = image i.

Opening validates (the error names the file and the problem); writing streams between
memory-mapped files in chunks, so peak memory does not grow with the number of images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..core.atomic import CHUNK_BYTES, OutputSet
from ..core.errors import InputError
from ..core.files import read_csv_file
from ..core.labels import LabelScheme

IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


class Pair(NamedTuple):
    """Paths of one image set: the `.npy` images and the annotation CSV."""

    images: Path
    ann: Path

    @classmethod
    def of(cls, images: str | Path, ann: str | Path) -> "Pair":
        return cls(Path(images), Path(ann))

    @classmethod
    def beside(cls, images: str | Path) -> "Pair":
        """`x/name_images.npy` -> annotations `x/name_ann.csv`; otherwise `x/<stem>_ann.csv`."""
        images = Path(images)
        stem = images.stem
        ann_stem = stem[: -len("_images")] + "_ann" if stem.endswith("_images") else stem + "_ann"
        return cls(images, images.with_name(ann_stem + ".csv"))


@dataclass
class ImageSet:
    """A validated image set: images memory-mapped read-only, annotations in a DataFrame."""

    pair: Pair
    images: np.ndarray
    ann: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ann)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])


def open_images(path: str | Path) -> np.ndarray:
    """Memory-map a `.npy` image array, checking it meets the contract (N, C, H, W) uint8/float32."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError on corrupt files
        raise InputError(path, f"not a readable .npy file ({exc})") from None
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise InputError(path, f"expected images of shape (N, C, H, W), got shape {getattr(images, 'shape', '?')}")
    if images.dtype not in IMAGE_DTYPES:
        raise InputError(path, f"expected dtype uint8 or float32, got {images.dtype}")
    return images


def read_annotations(path: str | Path, n_rows: int | None = None, scheme: LabelScheme | None = None) -> pd.DataFrame:
    """Read an annotation CSV and check it: `annotation` present, numeric, finite, in the scheme."""
    path = Path(path)
    ann = read_csv_file(path)
    if "Unnamed: 0" in ann.columns and "index" not in ann.columns:
        ann = ann.rename(columns={"Unnamed: 0": "index"})
    if "index" in ann.columns:
        if not np.array_equal(ann["index"].to_numpy(), np.arange(len(ann))):
            raise InputError(path, "column 'index' must be 0..N-1 in order (row i describes image i)")
        ann = ann.drop(columns="index")
    ann.index = pd.RangeIndex(len(ann), name="index")
    if "annotation" not in ann.columns:
        raise InputError(path, f"no 'annotation' column (columns: {list(ann.columns)})")
    values = pd.to_numeric(ann["annotation"], errors="coerce")
    bad_text = values.isna() & ann["annotation"].notna()
    if bad_text.any():
        row = int(np.flatnonzero(bad_text.to_numpy())[0])
        raise InputError(path, f"annotation in row {row} is not a number: {ann['annotation'].iloc[row]!r}")
    ann["annotation"] = values.astype(float)
    if n_rows is not None and len(ann) != n_rows:
        raise InputError(path, f"has {len(ann)} rows but its images have {n_rows}")
    if scheme is not None:
        bad = scheme.invalid_mask(ann["annotation"].to_numpy())
        if bad.any():
            rows = np.flatnonzero(bad)
            raise InputError(
                path,
                f"{len(rows)} annotation(s) are NaN or outside the label scheme {dict(scheme.ann_dict)} "
                f"(first: row {rows[0]} = {ann['annotation'].iloc[rows[0]]})",
            )
    return ann


def open_image_set(pair: Pair, scheme: LabelScheme | None = None, allow_empty: bool = False) -> ImageSet:
    """Open and validate one image set; raises InputError naming the file and the problem."""
    images = open_images(pair.images)
    if len(images) == 0 and not allow_empty:
        raise InputError(pair.images, "has no images (empty source)")
    ann = read_annotations(pair.ann, n_rows=len(images), scheme=scheme)
    return ImageSet(pair, images, ann)


def check_compatible(sets: Sequence[ImageSet]) -> None:
    """All sets must share image shape (C, H, W) and dtype to be combined."""
    first = sets[0]
    for s in sets[1:]:
        if s.image_shape != first.image_shape or s.images.dtype != first.images.dtype:
            raise InputError(
                s.pair.images,
                f"images are {s.image_shape} {s.images.dtype} but {first.pair.images} has "
                f"{first.image_shape} {first.images.dtype}; sources must match to be combined",
            )


def chunk_rows(images: np.ndarray) -> int:
    """Rows per streaming step so that one step moves about CHUNK_BYTES."""
    row_bytes = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
    return max(1, CHUNK_BYTES // row_bytes)


def iter_chunks(images: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    step = chunk_rows(images)
    for start in range(0, len(images), step):
        yield start, images[start : start + step]


def check_pixel_values(image_set: ImageSet) -> None:
    """Float images must be finite and in [0, 1] (uint8 images are 0-255 by their type); checked
    streaming, the error naming the file and the first bad row."""
    images = image_set.images
    if images.dtype == np.uint8:
        return
    for start, chunk in iter_chunks(images):
        flat = np.asarray(chunk).reshape(len(chunk), -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise InputError(image_set.pair.images, f"row {row}: NaN or infinite pixel values")
        low, high = flat.min(axis=1), flat.max(axis=1)
        outside = (low < 0) | (high > 1)
        if outside.any():
            at = int(np.argmax(outside))
            raise InputError(image_set.pair.images,
                             f"row {start + at}: float pixels must lie in [0, 1], found {low[at]:g} to {high[at]:g} "
                             "(0-255 images: store them as uint8, or divide by 255)")


def write_subsets(source: ImageSet, subsets: Mapping[Pair, np.ndarray], outputs: OutputSet,
                  annotations: Mapping[Pair, pd.DataFrame] | None = None) -> None:
    """Write several row subsets of one image set in a single streaming pass over its images.

    `subsets` maps each output pair to ascending row numbers; `annotations`, when given, replaces
    the annotation rows written for a pair (same length as its rows).
    """
    writers = {}
    for pair, rows in subsets.items():
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and np.any(np.diff(rows) <= 0):
            raise ValueError(f"{pair.images}: rows must be strictly ascending to keep image order")
        ann = annotations[pair] if annotations and pair in annotations else source.ann.iloc[rows]
        outputs.csv(ann.reset_index(drop=True).rename_axis("index"), pair.ann)
        writers[pair] = (rows, outputs.npy(pair.images, (len(rows), *source.image_shape), source.images.dtype))
    for start, chunk in iter_chunks(source.images):
        stop = start + len(chunk)
        for rows, writer in writers.values():
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi == lo:
                continue
            local = rows[lo:hi] - start
            if local[-1] - local[0] + 1 == len(local):  # contiguous: write without a copy
                writer.append(chunk[local[0] : local[-1] + 1])
            else:
                writer.append(chunk[local])




def suffixed(pair: Pair, suffix: str, out_dir: Path | None = None) -> Pair:
    """`combined_images.npy`/`combined_ann.csv` -> `..._images_<suffix>.npy`/`..._ann_<suffix>.csv`."""
    out_dir = Path(out_dir) if out_dir else pair.images.parent
    return Pair(out_dir / f"{pair.images.stem}_{suffix}.npy", out_dir / f"{pair.ann.stem}_{suffix}.csv")

"""Image sets on disk: a `.npy` of shape (N, C, H, W) plus an annotation CSV, row i = image i.

Everything here streams between memory-mapped files in chunks, so peak memory does not grow
with the number of images, and validates its inputs before writing anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .io import CHUNK_BYTES, OutputSet
from .labels import LabelScheme, round_annotations

IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
SPLITS = ("train", "val", "test")


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
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        ann = pd.read_csv(path)
    except Exception as exc:
        raise InputError(path, f"not a readable CSV file ({exc})") from None
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


def _traceable(ann: pd.DataFrame, images_path: Path) -> pd.DataFrame:
    """Add `image_id` (<source stem>:<row>) and `source` unless the rows already carry them."""
    ann = ann.copy()
    if "image_id" not in ann.columns:
        ann["image_id"] = [f"{images_path.stem}:{i}" for i in range(len(ann))]
    if "source" not in ann.columns:
        ann["source"] = str(images_path)
    return ann


def assign_test_split(ann: pd.DataFrame, scheme: LabelScheme, test_frac: float, seed: int) -> pd.Series:
    """`split` column: a stratified, seeded `test_frac` of each certain class is `test`, the rest `train`.

    Unsure and unlabeled rows are never test rows, so every model can be scored on the same images.
    """
    split = pd.Series("train", index=ann.index, dtype=object)
    if test_frac <= 0:
        return split
    rng = np.random.default_rng(seed)
    rounded = round_annotations(ann["annotation"])
    for name in scheme.certain_names:
        rows = np.flatnonzero(rounded == scheme.ann_dict[name])
        n_test = int(round(test_frac * len(rows)))
        chosen = rng.permutation(rows)[:n_test]
        split.iloc[np.sort(chosen)] = "test"
    return split


def combine(
    sources: Sequence[Pair],
    out: Pair,
    scheme: LabelScheme,
    *,
    test_frac: float | None = None,
    seed: int = 0,
    origins: Sequence[str] | None = None,
    allow_empty: bool = False,
    overrides: str | Path | None = None,
) -> pd.DataFrame:
    """Concatenate image sets in order into `out`, streaming; returns the combined annotations.

    Rows keep their source order, extra columns are kept (missing ones left empty), every row
    carries `image_id` and `source`. With `test_frac`, the `split` column is (re)assigned;
    with `origins` (one tag per source), an `origin` column says which input a row came from.
    `allow_empty` accepts sources with no rows (e.g. a baseline that got nothing wrong).
    `overrides`, a label-override CSV (see helpers.review), is applied after the test split is
    drawn, so corrections never reshuffle the shared test rows.
    """
    if not sources:
        raise InputError(out.images, "no sources given to combine")
    if origins is not None and len(origins) != len(sources):
        raise ValueError(f"{len(origins)} origins for {len(sources)} sources")
    sets = [open_image_set(p, scheme, allow_empty) for p in sources]  # validate everything before any work
    check_compatible(sets)
    parts = [_traceable(s.ann, s.pair.images) for s in sets]
    if origins is not None:  # which input each row came from, e.g. "unsure" / "wrong parasite"
        parts = [p.assign(origin=tag) for p, tag in zip(parts, origins)]
    ann = pd.concat(parts, ignore_index=True)
    ann.index = pd.RangeIndex(len(ann), name="index")
    duplicated = ann["image_id"].duplicated()
    if duplicated.any():
        raise InputError(sources[0].images, f"image_id {ann['image_id'][duplicated].iloc[0]!r} occurs twice; "
                         "give sources distinct file names")
    if "is_gt" in ann.columns:  # rows without the flag carry ground-truth labels (seed 002)
        ann["is_gt"] = ann["is_gt"].fillna(True).astype(bool)
    if test_frac is not None:
        ann["split"] = assign_test_split(ann, scheme, test_frac, seed)
    elif "split" in ann.columns:
        ann["split"] = ann["split"].fillna("train")
    else:
        ann["split"] = "train"
    if overrides is not None and Path(overrides).is_file():
        from .review import apply_overrides

        ann, _ = apply_overrides(ann, overrides, scheme)
        certain = np.isin(round_annotations(ann["annotation"]), [scheme.ann_dict[n] for n in scheme.certain_names])
        ann.loc[(ann["split"] == "test").to_numpy() & ~certain, "split"] = "train"  # test rows are certain images
    first = sets[0].images
    with OutputSet(inputs=[p for pair in sources for p in pair]) as outputs:
        writer = outputs.npy(out.images, (len(ann), *first.shape[1:]), first.dtype)
        for s in sets:
            for _, chunk in iter_chunks(s.images):
                writer.append(chunk)
        outputs.csv(ann, out.ann)
    return ann


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


def flag_values(values: pd.Series) -> np.ndarray:
    """Boolean flags as read back from CSV (True/False, 1/0, "true"/"false")."""
    return values.astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()


def flag_column(ann: pd.DataFrame, column: str) -> np.ndarray:
    """A boolean column such as `exclude` or `validation`; all False when absent."""
    return flag_values(ann[column]) if column in ann.columns else np.zeros(len(ann), bool)


def change_annotation_value(ann: pd.DataFrame, old: float, new: float) -> pd.DataFrame:
    """A copy of `ann` where every annotation equal to `old` becomes `new`."""
    ann = ann.copy()
    hit = np.isclose(ann["annotation"].to_numpy(dtype=float), old)
    ann.loc[hit, "annotation"] = float(new)
    return ann


def split_by_class(combined: Pair, scheme: LabelScheme, out_dir: Path | None = None) -> dict[str, Pair]:
    """Seed step 2: per-class image sets, unsure relabeled three ways, and certain classes together.

    Writes, beside `combined` (or in `out_dir`): `<stem>_<class>` for every class of the scheme,
    `combined_ann_unsure_as_<target>.csv` (0.8 / 0.2 / -0.8) and
    `<stem>_<positive>_and_<negative>`. Returns the written pairs by suffix.
    """
    from .layout import suffixed  # local import: layout imports this module

    source = open_image_set(combined, scheme)
    out_dir = Path(out_dir) if out_dir else combined.images.parent
    rounded = round_annotations(source.ann["annotation"])
    subsets: dict[Pair, np.ndarray] = {}
    written: dict[str, Pair] = {}
    for name, value in scheme.ann_dict.items():
        rows = np.flatnonzero(rounded < 0) if value < 0 else np.flatnonzero(rounded == value)
        if value < 0 and len(rows) == 0:
            continue
        written[name] = suffixed(combined, name, out_dir)
        subsets[written[name]] = rows
    certain = f"{scheme.positive}_and_{scheme.negative}"
    written[certain] = suffixed(combined, certain, out_dir)
    subsets[written[certain]] = np.flatnonzero(np.isin(rounded, [scheme.ann_dict[n] for n in scheme.certain_names]))

    unsure_ann = source.ann.iloc[subsets[written[scheme.unsure]]].reset_index(drop=True)
    with OutputSet(inputs=list(combined)) as outputs:
        write_subsets(source, subsets, outputs)
        for target in scheme.unsure_targets:
            relabeled = change_annotation_value(unsure_ann, scheme.ann_dict[scheme.unsure], scheme.unsure_as(target))
            pair = suffixed(combined, f"{scheme.unsure}_as_{target}", out_dir)
            outputs.csv(relabeled.rename_axis("index"), pair.ann)
            written[f"{scheme.unsure}_as_{target}"] = Pair(written[scheme.unsure].images, pair.ann)
    return written


def class_counts(ann: pd.DataFrame, scheme: LabelScheme, by: str | None = None) -> pd.DataFrame:
    """Number of images per class (rounded annotation), optionally per value of column `by`."""
    names = pd.Series(scheme.class_names(ann["annotation"]))
    order = [n for n in scheme.names if n in set(names)] + sorted(set(names) - set(scheme.names))
    frame = pd.DataFrame({"class": pd.Categorical(names.to_numpy(), categories=order)})
    if by is None:
        return frame.value_counts("class", sort=False).rename("images").to_frame()
    frame[by] = ann[by].to_numpy()
    return frame.groupby([by, "class"], observed=False, sort=False).size().unstack(fill_value=0)


def describe_sets(sets: Mapping[str, Pair] | Sequence[Pair], scheme: LabelScheme, allow_empty: bool = False,
                  compatible: bool = False) -> pd.DataFrame:
    """Validate image sets and summarise each (rows, shape, dtype, classes, test rows); raises on the
    first bad one. A list is named by file stem; `compatible` also requires one shape and dtype."""
    named = sets if isinstance(sets, Mapping) else {p.images.stem: p for p in sets}
    opened = {name: open_image_set(pair, scheme, allow_empty) for name, pair in named.items()}
    if compatible:
        check_compatible(list(opened.values()))
    rows = []
    for name, s in opened.items():
        counts = pd.Series(scheme.class_names(s.ann["annotation"])).value_counts()
        rows.append({"set": name, "images": str(s.pair.images), "rows": len(s), "shape": "x".join(map(str, s.image_shape)),
                     "dtype": str(s.images.dtype), **counts.to_dict(),
                     "test rows": int((s.ann["split"] == "test").sum()) if "split" in s.ann.columns else 0})
    table = pd.DataFrame(rows).set_index("set")
    classes = [n for n in scheme.names if n in table.columns]
    table[classes] = table[classes].fillna(0).astype(int)
    return table


def examples_per_class(image_set: ImageSet, scheme: LabelScheme, k: int, seed: int) -> dict[str, np.ndarray]:
    """Up to k images of each class (rounded annotation), drawn reproducibly."""
    rng = np.random.default_rng(seed)
    rounded = round_annotations(image_set.ann["annotation"])
    out = {}
    for value in sorted(set(rounded.tolist())):
        rows = np.flatnonzero(rounded == value)
        chosen = np.sort(rng.choice(rows, size=min(k, len(rows)), replace=False))
        out[scheme.name_of(value)] = np.asarray(image_set.images[chosen])
    return out


def summarize(ann: pd.DataFrame, scheme: LabelScheme) -> dict:
    """Counts for metrics.json: rows, per class, per split, per class and split."""
    names = pd.Series(scheme.class_names(ann["annotation"]))
    split = ann["split"] if "split" in ann.columns else pd.Series("train", index=ann.index)
    by_both = pd.crosstab(names.to_numpy(), split.to_numpy())
    return {
        "rows": int(len(ann)),
        "per_class": {k: int(v) for k, v in names.value_counts().items()},
        "per_split": {k: int(v) for k, v in split.value_counts().items()},
        "per_class_and_split": {c: {s: int(by_both.loc[c, s]) for s in by_both.columns} for c in by_both.index},
    }


def describe_outputs(written: Mapping[str, Pair]) -> pd.DataFrame:
    """One row per written set: files, rows, annotation values, test rows."""
    rows = []
    for name, pair in written.items():
        ann = read_annotations(pair.ann)
        values = sorted(set(np.round(ann["annotation"].to_numpy(), 3).tolist()))
        rows.append({"set": name, "images": pair.images.name, "annotations": pair.ann.name, "rows": len(ann),
                     "annotation values": values,
                     "test rows": int((ann["split"] == "test").sum()) if "split" in ann.columns else 0})
    return pd.DataFrame(rows).set_index("set")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import snapshot, write_set

from helpers.core.errors import InputError
from helpers.data.combine_split import assign_test_split, combine, split_by_class
from helpers.data.layout import Layout
from helpers.data.sets import Pair, open_image_set, read_annotations


def _sources(tmp_path, n1=30, n2=20, shape=(3, 5, 5), dtype=np.uint8):
    rng = np.random.default_rng(0)
    a = write_set(tmp_path / "a", "pat", rng.integers(0, 255, (n1, *shape)).astype(dtype),
                  rng.choice([0.0, 1.0, 2.0], n1), fov=np.arange(n1))
    b = write_set(tmp_path / "b", "neg", rng.integers(0, 255, (n2, *shape)).astype(dtype), np.zeros(n2))
    return a, b


def test_combine_keeps_order_columns_and_traceability(tmp_path, scheme):
    a, b = _sources(tmp_path)
    out = Pair(tmp_path / "combined_images.npy", tmp_path / "combined_ann.csv")
    combine([a, b], out, scheme)
    images = np.load(out.images)
    ann = read_annotations(out.ann)
    assert images.shape == (50, 3, 5, 5) and len(ann) == 50
    assert ann.index.tolist() == list(range(50))
    assert ann["fov"].iloc[:30].tolist() == list(range(30)) and ann["fov"].iloc[30:].isna().all()
    assert set(ann["split"]) == {"train"}
    # image_id round trip: every combined row points back at its source file and row
    sources = {p.images.stem: np.load(p.images) for p in (a, b)}
    for i, image_id in enumerate(ann["image_id"]):
        stem, row = image_id.rsplit(":", 1)
        np.testing.assert_array_equal(images[i], sources[stem][int(row)])
    assert ann["source"].iloc[0] == str(a.images) and ann["source"].iloc[-1] == str(b.images)


def test_combine_keeps_existing_image_ids(tmp_path, scheme):
    a, b = _sources(tmp_path)
    first = Pair(tmp_path / "c1_images.npy", tmp_path / "c1_ann.csv")
    combine([a, b], first, scheme)
    again = Pair(tmp_path / "c2_images.npy", tmp_path / "c2_ann.csv")
    combine([first], again, scheme)
    assert read_annotations(again.ann)["image_id"].tolist() == read_annotations(first.ann)["image_id"].tolist()


def test_test_split_is_stratified_seeded_and_only_certain(scheme):
    ann = pd.DataFrame({"annotation": [0.0] * 500 + [1.0] * 100 + [2.0] * 50})
    split = assign_test_split(ann, scheme, 0.2, seed=7)
    assert (split.iloc[:500] == "test").sum() == 100 and (split.iloc[500:600] == "test").sum() == 20
    assert (split.iloc[600:] == "train").all()
    assert split.equals(assign_test_split(ann, scheme, 0.2, seed=7))
    assert not split.equals(assign_test_split(ann, scheme, 0.2, seed=8))
    assert (assign_test_split(ann, scheme, 0.0, seed=7) == "train").all()


def test_split_by_class_counts_values_and_split_column(tiny_demo, scheme):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tiny_demo["data_dir"].parent / "runs", scheme)
    ann = combine(layout.default_sources, layout.combined, scheme, test_frac=0.25, seed=1)
    split_by_class(layout.combined, scheme)
    combined = np.load(layout.combined.images)
    rounded = np.rint(ann["annotation"]).astype(int)
    for name, value in scheme.ann_dict.items():
        if value < 0:
            assert not layout.class_set(name).images.exists()  # no unlabeled rows, no file
            continue
        s = open_image_set(layout.class_set(name), allow_empty=True)
        rows = np.flatnonzero(rounded == value)
        assert len(s) == len(rows)
        np.testing.assert_array_equal(np.asarray(s.images), combined[rows])
        assert s.ann["image_id"].tolist() == ann["image_id"].iloc[rows].tolist()
        assert s.ann["split"].tolist() == ann["split"].iloc[rows].tolist()
    certain = open_image_set(layout.certain)
    assert len(certain) == int((rounded <= 1).sum()) and set(certain.ann["annotation"]) == {0.0, 1.0}
    assert (certain.ann["split"] == "test").sum() == (ann["split"] == "test").sum()
    for target, value in (("parasite", 0.8), ("non-parasite", 0.2), ("unlabeled", -0.8)):
        relabeled = open_image_set(layout.unsure_relabeled(target), scheme)
        assert len(relabeled) == int((rounded == 2).sum()) and set(relabeled.ann["annotation"]) == {value}


def _assert_fails_cleanly(tmp_path, scheme, sources, match):
    out = Pair(tmp_path / "out" / "combined_images.npy", tmp_path / "out" / "combined_ann.csv")
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=match) as info:
        combine(sources, out, scheme)
    assert snapshot(tmp_path) == before, "a failed combine must not create or change any file"
    return info.value


def test_missing_file(tmp_path, scheme):
    a, b = _sources(tmp_path)
    b.ann.unlink()
    err = _assert_fails_cleanly(tmp_path, scheme, [a, b], "file not found")
    assert err.path == str(b.ann)


def test_row_count_mismatch(tmp_path, scheme):
    a, b = _sources(tmp_path)
    pd.read_csv(b.ann).iloc[:-1].to_csv(b.ann, index=False)
    err = _assert_fails_cleanly(tmp_path, scheme, [a, b], "19 rows but its images have 20")
    assert err.path == str(b.ann)


def test_no_annotation_column(tmp_path, scheme):
    a, b = _sources(tmp_path)
    pd.read_csv(a.ann).rename(columns={"annotation": "label"}).to_csv(a.ann, index=False)
    assert _assert_fails_cleanly(tmp_path, scheme, [a, b], "no 'annotation' column").path == str(a.ann)


@pytest.mark.parametrize("value", [np.nan, 3.0, 7.5])
def test_nan_or_value_outside_scheme(tmp_path, scheme, value):
    a, b = _sources(tmp_path)
    ann = pd.read_csv(b.ann)
    ann.loc[4, "annotation"] = value
    ann.to_csv(b.ann, index=False)
    assert _assert_fails_cleanly(tmp_path, scheme, [a, b], "row 4").path == str(b.ann)


def test_text_annotation(tmp_path, scheme):
    a, b = _sources(tmp_path)
    ann = pd.read_csv(b.ann)
    ann["annotation"] = ann["annotation"].astype(object)
    ann.loc[2, "annotation"] = "parasite"
    ann.to_csv(b.ann, index=False)
    _assert_fails_cleanly(tmp_path, scheme, [a, b], "row 2 is not a number")


def test_sources_with_different_shapes_or_dtypes(tmp_path, scheme):
    a, _ = _sources(tmp_path)
    rng = np.random.default_rng(1)
    other_shape = write_set(tmp_path / "c", "wide", rng.integers(0, 255, (5, 3, 6, 6)).astype(np.uint8), np.zeros(5))
    assert _assert_fails_cleanly(tmp_path, scheme, [a, other_shape], "must match").path == str(other_shape.images)
    other_dtype = write_set(tmp_path / "d", "float", rng.random((5, 3, 5, 5)).astype(np.float32), np.zeros(5))
    _assert_fails_cleanly(tmp_path, scheme, [a, other_dtype], "uint8")


def test_corrupt_npy(tmp_path, scheme):
    a, b = _sources(tmp_path)
    b.images.write_bytes(b.images.read_bytes()[:200])  # truncated
    assert _assert_fails_cleanly(tmp_path, scheme, [a, b], "not a readable .npy").path == str(b.images)
    b.images.write_bytes(b"this is not numpy")
    _assert_fails_cleanly(tmp_path, scheme, [a, b], "not a readable .npy")


def test_empty_source(tmp_path, scheme):
    a, _ = _sources(tmp_path)
    empty = write_set(tmp_path / "e", "empty", np.zeros((0, 3, 5, 5), np.uint8), [])
    assert _assert_fails_cleanly(tmp_path, scheme, [a, empty], "empty source").path == str(empty.images)


def test_wrong_image_rank(tmp_path, scheme):
    a, _ = _sources(tmp_path)
    flat = write_set(tmp_path / "f", "flat", np.zeros((5, 25), np.uint8), np.zeros(5))
    _assert_fails_cleanly(tmp_path, scheme, [a, flat], r"\(N, C, H, W\)")


def test_failure_midway_leaves_no_temp_files(tmp_path, scheme, monkeypatch):
    a, b = _sources(tmp_path)
    out = Pair(tmp_path / "out" / "combined_images.npy", tmp_path / "out" / "combined_ann.csv")
    import helpers.data.combine_split as ds

    def boom(images):
        yield 0, images[:1]
        raise OSError("disk full")

    monkeypatch.setattr(ds, "iter_chunks", boom)
    with pytest.raises(OSError):
        combine([a, b], out, scheme)
    assert list((tmp_path / "out").iterdir()) == []


def test_refuses_to_overwrite_an_input(tmp_path, scheme):
    a, b = _sources(tmp_path)
    with pytest.raises(ValueError, match="overwrite an input"):
        combine([a, b], a, scheme)
    assert len(np.load(a.images)) == 30


def test_pair_beside_follows_seed_naming():
    p = Pair.beside("/x/patient_combined_images.npy")
    assert p.ann == Path("/x/patient_combined_ann.csv")
    assert Pair.beside("/x/crops.npy").ann == Path("/x/crops_ann.csv")

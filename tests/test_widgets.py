"""The review widget driven as a user would, without a browser: its buttons' handlers run for real."""
import numpy as np
import pandas as pd
import pytest

from helpers.core.atomic import OutputSet
from helpers.review.widgets import EmbeddingView, ReviewWidget, ThresholdExplorer


@pytest.fixture
def review_files(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    images = rng.integers(0, 255, (n, 4, 9, 9)).astype(np.uint8)
    p = rng.random(n)
    preds = pd.DataFrame({"annotation": rng.choice([0.0, 1.0, 2.0], n), "image_id": [f"src:{i}" for i in range(n)],
                          "split": rng.choice(["train", "val", "test"], n),
                          "non-parasite output": 1 - p, "parasite output": p}).rename_axis("index")
    np.save(tmp_path / "images.npy", images)
    with OutputSet() as out:
        out.csv(preds, tmp_path / "preds.csv")
    return tmp_path, rng.normal(size=(n, 6))


def _button(widget, description):
    return next(b for box in widget.children if hasattr(box, "children") for b in box.children
                if getattr(b, "description", None) == description)


def test_select_relabel_undo_through_the_buttons(review_files, scheme):
    folder, features = review_files
    w = ReviewWidget(folder / "preds.csv", folder / "images.npy", scheme, folder / "overrides.csv",
                     features=features, per_page=8)
    assert len(w.grid.children) == 8
    first, second = w.grid.children[0], w.grid.children[1]
    first.children[2].value = True  # the tile's "select" toggle
    second.children[2].value = True
    chosen = {int(w.shown[0]), int(w.shown[1])}
    _button(w, "→ parasite").click()
    table = pd.read_csv(folder / "overrides.csv")
    assert set(table["image_id"]) == {f"src:{r}" for r in chosen} and set(table["new"]) == {"parasite"}
    assert all(w.labels[r] == "parasite" for r in chosen) and not w.selected
    w.grid.children[0].children[2].value = True
    _button(w, "flag exclude").click()
    assert len(pd.read_csv(folder / "overrides.csv")) == 3
    _button(w, "undo").click()
    _button(w, "undo").click()
    assert len(pd.read_csv(folder / "overrides.csv")) == 0
    assert w.labels.tolist() == [scheme.name_of(int(round(v))) for v in pd.read_csv(folder / "preds.csv")["annotation"]]


def test_key_entry_sort_paging_and_similar(review_files, scheme):
    folder, features = review_files
    w = ReviewWidget(folder / "preds.csv", folder / "images.npy", scheme, folder / "overrides.csv",
                     features=features, per_page=8)
    w.sort.value = "score"
    scores = pd.read_csv(folder / "preds.csv")["parasite output"].to_numpy()
    assert int(w.shown[0]) == int(np.argmax(scores))
    _button(w, "next ▶").click()
    assert w.page_number == 1 and "page 2 / 4" in w.page_label.value
    w.grid.children[0].children[2].value = True
    query = int(w.shown[0])
    _button(w, "similar to selected").click()
    assert int(w.shown[0]) == query and len(w.shown) == 8
    w.on_key({"type": "keydown", "key": "1"})  # a class value relabels the selection
    assert pd.read_csv(folder / "overrides.csv")["new"].tolist() == ["parasite"]
    w.on_key({"type": "keydown", "key": "u"})
    assert len(pd.read_csv(folder / "overrides.csv")) == 0
    w.on_key({"type": "keydown", "key": "ArrowLeft"})
    assert w.page_number == 0
    w.split_filter.value = "test"
    assert all(pd.read_csv(folder / "preds.csv")["split"].iloc[w.shown] == "test")


def test_threshold_explorer_updates_live(review_files, scheme):
    folder, _ = review_files
    preds = pd.read_csv(folder / "preds.csv")
    explorer = ThresholdExplorer(preds, scheme)
    before = explorer.table.value
    explorer.slider.value = 0.9
    assert explorer.table.value != before and "not counted: give rbc_counts_path" in explorer.table.value


def test_embedding_lasso_and_click_show_images_in_the_grid(review_files, scheme):
    folder, features = review_files
    preds = pd.read_csv(folder / "preds.csv")
    w = ReviewWidget(folder / "preds.csv", folder / "images.npy", scheme, folder / "overrides.csv",
                     features=features, per_page=8)
    view = EmbeddingView(features, preds, scheme, w)
    lo, hi = view.points.min(0) - 1, view.points.max(0) + 1
    view._on_lasso([(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])])  # a lasso around everything
    assert len(w.shown) == 8 and "30 point(s)" in view.info.value

    class Click:
        inaxes, xdata, ydata = view.ax, *view.points[5]

    view._on_click(Click)
    assert int(w.shown[0]) == 5  # the clicked point first, then its nearest neighbours


def test_verifying_test_labels_writes_the_verified_file_with_who_and_offers_certain_classes_only(review_files,
                                                                                              scheme):
    from helpers.data.verified import VerifiedStore
    from helpers.review.logic import QUEUE_ORDER

    folder, features = review_files
    preds = pd.read_csv(folder / "preds.csv")
    store = VerifiedStore(folder / "verified.csv", who="tester")
    w = ReviewWidget(preds, np.load(folder / "images.npy"), scheme, store, features=features, per_page=8,
                     sort=QUEUE_ORDER)
    assert w.sort.value == QUEUE_ORDER and w.shown.tolist() == list(range(8))  # the queue's head, in its order
    labels = [getattr(b, "description", "") for box in w.children if hasattr(box, "children") for b in box.children]
    assert "→ parasite" in labels and "→ non-parasite" in labels
    assert "→ unsure" not in labels and not any(label.startswith("flag") for label in labels)
    w.grid.children[0].children[2].value = True
    chosen = int(w.shown[0])
    _button(w, "→ non-parasite").click()
    table = pd.read_csv(folder / "verified.csv")
    assert table[["image_id", "label", "who", "queue"]].values.tolist() == [[f"src:{chosen}", "non-parasite", "tester",
                                                                            "test"]]
    assert not (folder / "overrides.csv").exists()  # a verified label is no label correction: nothing retrains
    _button(w, "undo").click()
    assert pd.read_csv(folder / "verified.csv").empty

"""ipywidgets for interactive review in JupyterLab. All decisions live in review.logic,
review.features and data.overrides; these classes only lay out controls and call them.

    ReviewWidget      paged thumbnail grid: sort, filter, sample, select, relabel, flag, undo,
                      "similar to selected"
    EmbeddingView     2-D PCA/UMAP scatter of the features; click or lasso points to show them
    ThresholdExplorer slider over a class's threshold: confusion matrix, threshold metrics, FP per µl
                      of the negative slides (with the red cells imaged per slide)
"""
from __future__ import annotations

import io
from pathlib import Path

import ipywidgets as W
import numpy as np
import pandas as pd
from ipyevents import Event
from ipympl.backend_nbagg import Canvas, FigureManager
from matplotlib.image import imsave
from matplotlib.widgets import LassoSelector

from ..core.columns import output_column, output_probabilities
from ..core.errors import InputError
from ..core.labels import LabelScheme
from ..data.overrides import OverrideStore
from ..data.red_cells import RedCellCounts
from ..data.sets import open_images, read_annotations
from ..data.verified import VerifiedStore
from ..metrics import FP_PER_UL, certain_scores, threshold_summary
from ..plots import composite, embedding_scatter, short_id, to_display
from . import features as review_features
from . import logic as review


def thumbnail_png(image: np.ndarray, channel: str = "composite", scale: int = 3) -> bytes:
    """PNG bytes of one (C, H, W) image: false-colour composite or one channel in grey."""
    if channel == "composite":
        rgb = composite(image[None])[0]
    else:
        x = to_display(image[None])[0, int(channel)]
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
        rgb = np.repeat(x[:, :, None], 3, axis=2)
    rgb = np.kron(rgb, np.ones((scale, scale, 1)))
    buf = io.BytesIO()
    imsave(buf, np.clip(rgb, 0, 1), format="png")
    return buf.getvalue()


class ReviewWidget(W.VBox):
    """Review a run's predictions (labels go to an override file: `store` a path or an OverrideStore)
    or the test-review queue (`store` a VerifiedStore: labels become verified test labels).
    Predictions and images are files, or a frame and an array."""

    def __init__(self, predictions: str | Path | pd.DataFrame, images: str | Path | np.ndarray, scheme: LabelScheme,
                 store: str | Path | OverrideStore | VerifiedStore, *, features: np.ndarray | None = None,
                 per_page: int = 24, seed: int = 0, sort: str = "likely wrong"):
        self.preds = predictions if isinstance(predictions, pd.DataFrame) else read_annotations(predictions)
        self.images = images if isinstance(images, np.ndarray) else open_images(images)
        if len(self.images) != len(self.preds):
            raise InputError(str(predictions)[:200] if not isinstance(predictions, pd.DataFrame) else "predictions",
                             f"{len(self.preds)} rows but {len(self.images)} images")
        self.scheme, self.features, self.per_page = scheme, features, per_page
        self.store = store if isinstance(store, (OverrideStore, VerifiedStore)) else OverrideStore(
            store, source_file=str(predictions) if not isinstance(predictions, pd.DataFrame) else "")
        self.labels = scheme.class_names(self.preds["annotation"])  # as shown; updated when relabeled here
        self.selected: set[int] = set()
        self.page_number = 0
        self._make_controls(output_probabilities(self.preds)[1], seed, sort)
        navigation, actions = self._make_buttons()
        self.page_label = W.HTML()
        self.status = W.HTML()
        self.grid = W.GridBox(layout=W.Layout(grid_template_columns="repeat(auto-fill, 122px)", grid_gap="6px"))
        super().__init__([
            W.HBox([self.sort, self.score_class, self.descending]),
            W.HBox([self.label_filter, self.split_filter, self.score_range]),
            W.HBox([self.channel, self.seed, self.sampler, *navigation["sampling"]]),
            W.HBox([navigation["prev"], self.page_label, navigation["next"]]),
            self.grid,
            W.HBox(actions, layout=W.Layout(flex_flow="row wrap")),
            self.status,
            W.HTML("<small>Keys (mouse over the widget): a class value relabels the selection "
                   f"({', '.join(f'{v} {n}' for n, v in self.label_keys.items())}), ← / → turn pages, u undoes.</small>"),
        ])
        self.shown: np.ndarray = np.array([], int)
        self.refresh(reset_page=True)
        self._keys = Event(source=self, watched_events=["keydown"], prevent_default_action=True)
        self._keys.on_dom_event(self.on_key)

    @property
    def label_keys(self) -> dict[str, int]:
        """The classes a reviewer can give, with their keys: every class, or the certain ones when
        verifying test labels."""
        names = self.scheme.certain_names if isinstance(self.store, VerifiedStore) else self.scheme.names
        return {name: self.scheme.ann_dict[name] for name in names}

    def _make_controls(self, classes: list[str], seed: int, sort: str) -> None:
        """The sort, filter and display controls; any change redraws from the first page."""
        scheme = self.scheme
        sorts = list(dict.fromkeys([sort, *review.SORTS, *(c for c in ("label_quality",) if c in self.preds.columns)]))
        self.sort = W.Dropdown(options=sorts, value=sort, description="sort")
        self.score_class = W.Dropdown(options=classes, value=scheme.positive if scheme.positive in classes else classes[-1],
                                      description="class")
        self.descending = W.Checkbox(value=True, description="descending")
        self.label_filter = W.Dropdown(options=["all"] + scheme.names, value="all", description="label")
        splits = ["all"] + sorted(self.preds["split"].dropna().unique().tolist()) if "split" in self.preds else ["all"]
        self.split_filter = W.Dropdown(options=splits, value="all", description="split")
        self.score_range = W.FloatRangeSlider(value=(0.0, 1.0), min=0, max=1, step=0.01, description="score")
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="160px"))
        self.channel = W.Dropdown(options=["composite"] + [str(c) for c in range(self.images.shape[1])],
                                  value="composite", description="channel")
        self.sampler = W.Dropdown(options=review.SAMPLERS, value="max entropy", description="sample by")
        for control in (self.sort, self.score_class, self.descending, self.label_filter, self.split_filter,
                        self.score_range, self.seed, self.channel):
            control.observe(lambda _: self.refresh(reset_page=True), names="value")

    def _make_buttons(self) -> tuple[dict, list[W.Button]]:
        """The navigation and sampling buttons, and the action buttons (relabel, flag, undo, clear), wired up."""
        sample_button = W.Button(description="sample a page", icon="random")
        similar_button = W.Button(description="similar to selected", icon="search")
        prev_button, next_button = W.Button(description="◀ prev"), W.Button(description="next ▶")
        label_buttons = [W.Button(description=f"→ {name}", tooltip=f"set label {name} (key {value})",
                                  button_style="primary", layout=W.Layout(width="auto"))
                         for name, value in self.label_keys.items()]
        for button, name in zip(label_buttons, self.label_keys):
            button.on_click(lambda _, name=name: self.relabel(name))
        flag_buttons = [W.Button(description=f"flag {f}", layout=W.Layout(width="auto")) for f in self.store.flags]
        for button, field in zip(flag_buttons, self.store.flags):
            button.on_click(lambda _, field=field: self.flag(field))
        undo_button = W.Button(description="undo", icon="undo", button_style="warning", layout=W.Layout(width="auto"))
        clear_button = W.Button(description="clear selection", layout=W.Layout(width="auto"))
        prev_button.on_click(lambda _: self.turn(-1))
        next_button.on_click(lambda _: self.turn(+1))
        sample_button.on_click(lambda _: self.sample())
        similar_button.on_click(lambda _: self.similar())
        undo_button.on_click(lambda _: self.undo())
        clear_button.on_click(lambda _: self.clear_selection())
        navigation = {"prev": prev_button, "next": next_button, "sampling": [sample_button, similar_button]}
        return navigation, label_buttons + flag_buttons + [undo_button, clear_button]

    # -- what is shown
    def ordered_rows(self) -> np.ndarray:
        rows = review.order_rows(self.preds, self.scheme, self.sort.value, self.score_class.value,
                                 self.descending.value, self.seed.value)
        return review.filter_rows(self.preds, self.scheme, rows,
                                  label=None if self.label_filter.value == "all" else self.label_filter.value,
                                  split=None if self.split_filter.value == "all" else self.split_filter.value,
                                  score_class=self.score_class.value, score_range=self.score_range.value)

    def refresh(self, reset_page: bool = False) -> None:
        self.rows = self.ordered_rows()
        if reset_page:
            self.page_number = 0
        self.show(review.page(self.rows, self.page_number, self.per_page))
        pages = max(1, -(-len(self.rows) // self.per_page))
        self.page_label.value = f"&nbsp;page {self.page_number + 1} / {pages} · {len(self.rows)} images&nbsp;"

    def turn(self, step: int) -> None:
        pages = max(1, -(-len(self.rows) // self.per_page))
        self.page_number = min(max(self.page_number + step, 0), pages - 1)
        self.refresh()

    def show(self, rows: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Put these rows in the grid (a page, a sample, or a similarity result)."""
        self.shown = np.asarray(rows, int)
        probs, names = output_probabilities(self.preds)
        tiles = []
        for i, row in enumerate(self.shown):
            image = W.Image(value=thumbnail_png(np.asarray(self.images[row]), self.channel.value), format="png",
                            layout=W.Layout(width="118px", height="118px"))
            best = int(probs[row].argmax())
            extra = f" sim {scores[i]:.2f}" if scores is not None else ""
            caption = W.HTML(f"<div style='font-size:10px;line-height:1.2'>{short_id(self.preds['image_id'].iloc[row]) if 'image_id' in self.preds else row}"
                             f"<br>label <b>{self.labels[row]}</b><br>pred {names[best]} {probs[row, best]:.2f}{extra}</div>")
            toggle = W.ToggleButton(value=row in self.selected, description="select", layout=W.Layout(width="118px"))
            toggle.observe(lambda change, row=row: self._toggle(row, change["new"]), names="value")
            tiles.append(W.VBox([image, caption, toggle]))
        self.grid.children = tiles

    def _toggle(self, row: int, on: bool) -> None:
        (self.selected.add if on else self.selected.discard)(row)
        self.status.value = f"{len(self.selected)} selected"

    def clear_selection(self) -> None:
        self.selected.clear()
        self.show(self.shown)
        self.status.value = "selection cleared"

    # -- actions
    def relabel(self, name: str) -> None:
        rows = sorted(self.selected)
        if not rows:
            self.status.value = "select images first"
            return
        ids = self.preds["image_id"].iloc[rows].tolist()
        batch = self.store.record_labels(ids, [self.labels[r] for r in rows], name)
        self.labels[rows] = name
        self.selected.clear()
        self.show(self.shown)
        self.status.value = f"{len(rows)} image(s) relabeled {name} (action {batch}, saved to {self.store.path})"

    def flag(self, field: str) -> None:
        rows = sorted(self.selected)
        if not rows:
            self.status.value = "select images first"
            return
        batch = self.store.add(self.preds["image_id"].iloc[rows].tolist(), [False] * len(rows), True, field)
        self.selected.clear()
        self.show(self.shown)
        self.status.value = f"{len(rows)} image(s) flagged {field} (action {batch})"

    def undo(self) -> None:
        undone = self.store.undo()
        self.labels = self.scheme.class_names(self.preds["annotation"])
        by_id = pd.Series(np.arange(len(self.preds)), index=self.preds["image_id"])
        for image_id, label in self.store.labels_in_force().items():
            if image_id in by_id.index:
                self.labels[by_id[image_id]] = label
        self.show(self.shown)
        self.status.value = f"undid the last action ({undone} row(s))" if undone else "nothing to undo"

    def on_key(self, event: dict) -> None:
        """A key pressed over the widget: class value -> relabel, arrows -> page, u -> undo."""
        key = str(event.get("key", ""))
        by_value = {str(v): n for n, v in self.label_keys.items()}
        if key in by_value:
            self.relabel(by_value[key])
        elif key == "ArrowRight":
            self.turn(+1)
        elif key == "ArrowLeft":
            self.turn(-1)
        elif key.lower() == "u":
            self.undo()

    def sample(self) -> None:
        rows = review.sample_for_review(self.preds, self.sampler.value, self.per_page, self.score_class.value,
                                        features=self.features, candidates=self.rows, seed=self.seed.value)
        self.show(rows)
        self.status.value = f"sampled {len(rows)} by {self.sampler.value}"

    def similar(self, k: int | None = None) -> None:
        if self.features is None or not self.selected:
            self.status.value = "select one image (features are needed: pass a model bundle)"
            return
        query = min(self.selected)
        rows, scores = review_features.most_similar(self.features, query, k or self.per_page)
        self.show(rows, scores)
        self.status.value = f"the {len(rows) - 1} images most similar to {self.preds['image_id'].iloc[query]}"


class EmbeddingView(W.VBox):
    """A 2-D embedding of the features; click a point or draw a lasso to show images in `grid`."""

    def __init__(self, features: np.ndarray, preds: pd.DataFrame, scheme: LabelScheme, grid: ReviewWidget,
                 method: str = "pca", color_by: str = "label", seed: int = 0):
        self.points = review_features.embed_2d(features, method, seed)
        self.grid = grid
        fig = embedding_scatter(self.points, scheme.class_names(preds["annotation"]), scheme.names,
                                title=f"{method.upper()} of penultimate features",
                                scores=None if color_by == "label" else preds[output_column(color_by)].to_numpy())
        self.figure, self.ax = fig, fig.axes[0]
        self.info = W.HTML()
        canvas = Canvas(fig)
        FigureManager(canvas, 0)
        canvas.header_visible = False
        self._lasso = LassoSelector(self.ax, self._on_lasso)
        canvas.mpl_connect("button_press_event", self._on_click)
        self.info.value = "Draw a lasso around points, or click one, to show the images below."
        super().__init__([canvas, self.info])

    def _on_lasso(self, vertices) -> None:
        rows = np.flatnonzero(review_features.in_polygon(self.points, np.asarray(vertices)))
        self.grid.show(rows[: self.grid.per_page])
        self.info.value = f"{len(rows)} point(s) selected; the first {min(len(rows), self.grid.per_page)} are shown"

    def _on_click(self, event) -> None:
        if event.inaxes is not self.ax or event.xdata is None:
            return
        nearest = int(np.argmin(((self.points - [event.xdata, event.ydata]) ** 2).sum(1)))
        if self.grid.features is not None:
            rows, scores = review_features.most_similar(self.grid.features, nearest, self.grid.per_page)
            self.grid.show(rows, scores)
        else:
            self.grid.show(np.array([nearest]))
        self.info.value = f"point {nearest} and its nearest neighbours"


class ThresholdExplorer(W.VBox):
    """A slider over one class's threshold with its confusion matrix and threshold metrics, live."""

    def __init__(self, preds: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray | None = None,
                 class_name: str | None = None, *, red_cells: RedCellCounts | None = None, rbc_per_ul: float = 5e6):
        class_name = class_name or scheme.positive
        self.is_pos, self.scores = certain_scores(preds, scheme, rows, class_name)
        self.class_name = class_name
        rows = np.arange(len(preds)) if rows is None else np.asarray(rows)
        # the per-slide false positives count the positive class only (the origin's parasite spots)
        self.slide_fp = (None if red_cells is None or class_name != scheme.positive else
                         lambda threshold: review.slide_fp_summary(preds, scheme, rows, threshold, red_cells, rbc_per_ul))
        self.slider = W.FloatSlider(value=0.5, min=0.01, max=0.99, step=0.01, description="threshold",
                                    continuous_update=False, layout=W.Layout(width="500px"))
        self.table = W.HTML()
        self.slider.observe(lambda _: self.update(), names="value")
        super().__init__([self.slider, self.table])
        self.update()

    def update(self) -> None:
        s = threshold_summary(self.is_pos, self.scores, self.slider.value)
        cm = (f"<table style='border-collapse:collapse'><tr><td></td><th>pred {self.class_name}</th><th>pred other</th></tr>"
              f"<tr><th>is {self.class_name}</th><td>{s['TP']}</td><td>{s['FN']}</td></tr>"
              f"<tr><th>other</th><td>{s['FP']}</td><td>{s['TN']}</td></tr></table>")
        metrics = " · ".join(f"{k} {s[k]:.3f}" for k in ("recall", "specificity", "precision", "npv", "f1", "mcc", "accuracy"))
        if self.slide_fp is None:
            per_ul = "not counted: give rbc_counts_path, the red cells imaged per slide"
        else:
            fp = self.slide_fp(self.slider.value)
            per_ul = (f"{fp[f'{FP_PER_UL} (slide mean)']:,.1f} on average over {fp['negative slides']} negative slides "
                      f"(at most {fp[f'{FP_PER_UL} (slide max)']:,.1f})")
        self.table.value = f"{cm}<p>{metrics}</p><p><b>{FP_PER_UL}</b>: {per_ul}</p>"

"""Every path of the pipeline, derived in one place from data_dir, data_dir_n and data_dir_base.

A run folder (`data_dir_base/<run>`) holds one model run: the baselines `s_a`, `s_b`, or a strategy
`s_1a` ... whose files carry a tag: `diff` (its differentiator) or `cl` (its final classifier, as the
origin's notes name it; tagged `final` by earlier versions, still read when only such a file exists).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.labels import LabelScheme
from ..core.paths import resolve
from .sets import Pair, suffixed

CLASSIFIER = "cl"  # the tag of a strategy's final classifier (the origin's `combined_images_cl.npy`, ...)
TAGS = ("", "diff", CLASSIFIER)
LEGACY_TAGS = {CLASSIFIER: "final"}  # earlier versions tagged the final classifier's files `final`


@dataclass(frozen=True)
class Layout:
    data_dir: Path
    data_dir_n: Path
    data_dir_base: Path
    scheme: LabelScheme

    @classmethod
    def from_params(cls, data_dir: str, data_dir_n: str, data_dir_base: str, scheme: LabelScheme) -> "Layout":
        return cls(resolve(data_dir), resolve(data_dir_n), resolve(data_dir_base), scheme)

    # step 01: inputs and the combined set
    @property
    def default_sources(self) -> list[Pair]:
        return [
            Pair(self.data_dir / "patient_combined_images.npy", self.data_dir / "patient_combined_ann.csv"),
            Pair(self.data_dir_n / "neg_combined_images.npy", self.data_dir_n / "neg_combined_ann.csv"),
        ]

    def sources(self, images_paths: list[str]) -> list[Pair]:
        """The given `.npy` paths (each with `<stem>_ann.csv` beside it), or the origin's two sources."""
        return [Pair.beside(resolve(p)) for p in images_paths] if images_paths else self.default_sources

    @property
    def combined(self) -> Pair:
        return Pair(self.data_dir / "combined_images.npy", self.data_dir / "combined_ann.csv")

    # step 02: split by class
    def class_set(self, name: str) -> Pair:
        return suffixed(self.combined, name)

    def unsure_relabeled(self, target: str) -> Pair:
        """The unsure images with annotations relabeled as `target` (0.8, 0.2 or -0.8)."""
        return Pair(self.class_set(self.scheme.unsure).images, suffixed(self.combined, f"{self.scheme.unsure}_as_{target}").ann)

    @property
    def certain(self) -> Pair:
        return self.class_set(f"{self.scheme.positive}_and_{self.scheme.negative}")

    def prepared_files(self) -> dict[Path, str]:
        """Every file steps 01 and 02 write, with the step that writes it."""
        files = {path: "01_combine" for path in self.combined}
        for name in (*self.scheme.ann_dict, f"{self.scheme.positive}_and_{self.scheme.negative}"):
            files.update({path: "02_split" for path in self.class_set(name)})
        for target in self.scheme.unsure_targets:
            files[self.unsure_relabeled(target).ann] = "02_split"
        return files

    def input_collision(self, path: Path, runs: Sequence[str]) -> str | None:
        """Why the pipeline would overwrite `path` if it were an input, or None. `runs`: the run
        folders' names (s_a, s_b, the strategies), whose files steps 03-05 write."""
        path = Path(path).resolve()
        step = {p.resolve(): s for p, s in self.prepared_files().items()}.get(path)
        if step:
            return f"is also an output of {step}, which would overwrite it"
        for folder in (self.run_dir(r) for r in runs):
            if path.is_relative_to(folder.resolve()):
                return f"lies in {folder}, where the pipeline writes its results"
        return None

    # later steps: one folder per run (s_a, s_b, s_1a, ...)
    def run_dir(self, name: str) -> Path:
        return self.data_dir_base / name

    def predictions(self, run: str, tag: str = "") -> Path:
        return self._tagged(run, "ann_with_predictions", tag, ".csv")

    def model_perf(self, run: str, tag: str = "") -> Path:
        return self._tagged(run, "model_perf", tag, ".zip")

    def _tagged(self, run: str, stem: str, tag: str, suffix: str) -> Path:
        return self.run_dir(run) / f"{stem}{'_' + tag if tag else ''}{suffix}"

    @staticmethod
    def readable(path: Path) -> Path:
        """For reading only: a run folder written by an earlier version holds `*_final` files instead of `*_cl`."""
        for tag, legacy in LEGACY_TAGS.items():
            old = path.with_name(path.name.replace(f"_{tag}.", f"_{legacy}."))
            if old != path and not path.is_file() and old.is_file():
                return old
        return path

    def right_wrong(self, run: str, class_name: str, which: str) -> Pair:
        base = Pair(self.run_dir(run) / "combined_images.npy", self.run_dir(run) / "combined_ann.csv")
        return suffixed(base, f"{class_name}_{which}")

    def run_set(self, run: str, tag: str) -> Pair:
        """`s_XY/combined_{images,ann}_<tag>` (tag `diff` or `cl`)."""
        return Pair(self.run_dir(run) / f"combined_images_{tag}.npy", self.run_dir(run) / f"combined_ann_{tag}.csv")

    def curated_certain(self, run: str) -> Pair:
        """The certain images with a strategy's wrong labels pruned or fixed (same images, own annotations)."""
        return Pair(self.certain.images, self.run_dir(run) / f"{self.certain.ann.stem}_curated.csv")

    def relabeled(self, run: str, thresh: float) -> Path:
        return self.run_dir(run) / f"unsure_relabeled_thresh_{thresh:g}.csv"

    def overrides(self, overrides_path: str) -> Path | None:
        """The label-override CSV, or None when the parameter is empty."""
        return resolve(overrides_path) if overrides_path else None

    # 06: reviewing the test rows
    @property
    def test_queue(self) -> Path:
        """The test rows, most likely mislabelled first (06 writes it; 07 walks it with queue "test")."""
        return self.data_dir_base / "test_review_queue.csv"

    @property
    def simulated_verified(self) -> Path:
        """The verified labels the simulated reviewer gave (`review_budget`, demo truth only)."""
        return self.data_dir_base / "verified_simulated.csv"

    # bookkeeping
    @property
    def reports_dir(self) -> Path:
        return self.data_dir_base / "reports"

    @property
    def metrics_dir(self) -> Path:
        return self.data_dir_base / "metrics"

    def gallery(self, run: str) -> Path:
        """05's page of the images a strategy's curation changed (reports/index.html links it)."""
        return self.reports_dir / f"gallery_{run}.html"

    @property
    def comparison_chart(self) -> Path:
        """06's chart as a PNG, which reports/index.html opens with."""
        return self.reports_dir / "comparison.png"

    def metrics(self, notebook: str, strategy: str = "") -> Path:
        """A step's metrics.json: one per notebook, one per notebook and strategy for 04 and 05."""
        return self.metrics_dir / f"{step_name(notebook, strategy)}.json"


def step_name(notebook: str, strategy: str = "") -> str:
    """A pipeline step: the notebook, and for 04 / 05 the strategy it runs (`04_differentiator_s_1a`)."""
    return f"{notebook}_{strategy}" if strategy else notebook

"""Every path of the pipeline, derived in one place from data_dir, data_dir_n and data_dir_base."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .datasets import Pair
from .labels import LabelScheme

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str | Path) -> Path:
    """Relative paths are relative to the project root, so notebooks work from any cwd."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def suffixed(pair: Pair, suffix: str, out_dir: Path | None = None) -> Pair:
    """`combined_images.npy`/`combined_ann.csv` -> `..._images_<suffix>.npy`/`..._ann_<suffix>.csv`."""
    out_dir = Path(out_dir) if out_dir else pair.images.parent
    return Pair(out_dir / f"{pair.images.stem}_{suffix}.npy", out_dir / f"{pair.ann.stem}_{suffix}.csv")


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
        """The given `.npy` paths (each with `<stem>_ann.csv` beside it), or the seed's two sources."""
        return [Pair.beside(resolve(p)) for p in images_paths] if images_paths else self.default_sources

    @property
    def combined(self) -> Pair:
        return Pair(self.data_dir / "combined_images.npy", self.data_dir / "combined_ann.csv")

    # step 02: split by class
    def class_set(self, name: str) -> Pair:
        return suffixed(self.combined, name)

    def unsure_as(self, target: str) -> Pair:
        return Pair(self.class_set(self.scheme.unsure).images, suffixed(self.combined, f"{self.scheme.unsure}_as_{target}").ann)

    @property
    def certain(self) -> Pair:
        return self.class_set(f"{self.scheme.positive}_and_{self.scheme.negative}")

    # later steps: one folder per run (s_a, s_b, s_1a, ...)
    def run_dir(self, name: str) -> Path:
        return self.data_dir_base / name

    def predictions(self, run: str, tag: str = "") -> Path:
        return self.run_dir(run) / f"ann_with_predictions{'_' + tag if tag else ''}.csv"

    def model_perf(self, run: str, tag: str = "") -> Path:
        return self.run_dir(run) / f"model_perf{'_' + tag if tag else ''}.zip"

    def right_wrong(self, run: str, class_name: str, which: str) -> Pair:
        base = Pair(self.run_dir(run) / "combined_images.npy", self.run_dir(run) / "combined_ann.csv")
        return suffixed(base, f"{class_name}_{which}")

    def run_set(self, run: str, tag: str) -> Pair:
        """`s_XY/combined_{images,ann}_<tag>` (tag `diff` or `cl`)."""
        return Pair(self.run_dir(run) / f"combined_images_{tag}.npy", self.run_dir(run) / f"combined_ann_{tag}.csv")

    def relabeled(self, run: str, thresh: float) -> Path:
        return self.run_dir(run) / f"unsure_relabeled_thresh_{thresh:g}.csv"

    def overrides(self, overrides_path: str) -> Path | None:
        """The label-override CSV, or None when the parameter is empty."""
        return resolve(overrides_path) if overrides_path else None

    # bookkeeping
    @property
    def reports_dir(self) -> Path:
        return self.data_dir_base / "reports"

    def metrics(self, step: str) -> Path:
        return self.data_dir_base / "metrics" / f"{step}.json"

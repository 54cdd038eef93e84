"""Run a notebook of the suite with papermill, as the runner and a user would."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill as pm

from helpers.core.paths import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def run_notebook(name: str, out_dir: Path, **parameters) -> nbformat.NotebookNode:
    out_dir.mkdir(parents=True, exist_ok=True)
    if name in ("01_combine", "07_review"):  # never the developer's own demo corrections
        parameters.setdefault("overrides_path", str(out_dir / "overrides.csv"))
    return pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                               parameters=parameters, kernel_name="python3", progress_bar=False,
                               cwd=str(NOTEBOOKS))


def images_shown(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def progress_bars(nb: nbformat.NotebookNode) -> list[str]:
    """Every output of an executed notebook that holds a progress bar's redraw (tqdm's `0%| | 0/46 [...]`)."""
    streams = [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    return [text for text in streams if "it/s]" in text or "%|" in text]


def read_metrics(data_dir_base: Path, step: str) -> dict:
    return json.loads((data_dir_base / "metrics" / f"{step}.json").read_text())

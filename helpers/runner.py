"""Batch runner: execute the pipeline's notebooks with papermill from a parameters YAML."""
from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .errors import ParameterError
from .layout import PROJECT_ROOT
from .params import NOTEBOOK_PARAMETERS, check_parameters

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
PIPELINE = ("01_combine", "02_split", "03_baselines_SA_SB")


@dataclass
class StepResult:
    step: str
    status: str
    seconds: float
    output: Path
    error: str = ""


@dataclass
class RunPlan:
    """Parameters of every step, checked before anything runs."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports_dir: Path = Path()


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (numbers, lists, dicts, strings)."""
    if "=" not in text:
        raise ParameterError(text, "override must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def load_parameters(path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    path = Path(path)
    if not path.is_file():
        raise ParameterError(str(path), "parameters file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError(str(path), "must be a YAML mapping of parameter: value")
    data.update(dict(parse_override(o) for o in overrides))
    return data


def plan(params: dict[str, Any], steps: tuple[str, ...] = PIPELINE) -> RunPlan:
    """Give each notebook the parameters it declares; reject a key no notebook takes."""
    known = {name for step in steps for name in NOTEBOOK_PARAMETERS[step]}
    for key in params:
        if key not in known:
            raise ParameterError(key, f"unknown parameter; the pipeline takes {sorted(known)}")
    run = RunPlan()
    for step in steps:
        own = {k: v for k, v in params.items() if k in NOTEBOOK_PARAMETERS[step]}
        defaults = notebook_defaults(step)
        merged = {**defaults, **own}
        cfg = check_parameters(step, merged)  # malformed values fail here, before any notebook runs
        run.steps[step] = merged
        run.reports_dir = cfg.layout.reports_dir
    return run


def notebook_defaults(step: str) -> dict[str, Any]:
    """The literals assigned in a notebook's cell tagged `parameters`."""
    path = NOTEBOOK_DIR / f"{step}.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(str(path), f"needs exactly one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def execute(step: str, parameters: dict[str, Any], reports_dir: Path) -> StepResult:
    import papermill as pm

    reports_dir.mkdir(parents=True, exist_ok=True)
    output = reports_dir / f"{step}.ipynb"
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{step}.ipynb"), str(output), parameters=parameters,
                            kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK_DIR))
    except Exception as exc:  # papermill wraps the notebook's own error; keep its last line
        return StepResult(step, "failed", time.perf_counter() - start, output, str(exc).strip().splitlines()[-1])
    return StepResult(step, "ok", time.perf_counter() - start, output)


def run(params: dict[str, Any], steps: tuple[str, ...] = PIPELINE) -> list[StepResult]:
    """Run the steps in order; a failed step stops the ones after it (they depend on it)."""
    run_plan = plan(params, steps)
    results: list[StepResult] = []
    for step in steps:
        if results and results[-1].status != "ok":
            results.append(StepResult(step, "skipped (dependency failed)", 0.0, Path()))
            continue
        result = execute(step, run_plan.steps[step], run_plan.reports_dir)
        print(f"{result.step}: {result.status} in {result.seconds:.1f}s", flush=True)
        results.append(result)
    return results


def summary_table(results: list[StepResult]) -> str:
    lines = [f"{'step':<28} {'status':<28} {'seconds':>8}  report"]
    for r in results:
        lines.append(f"{r.step:<28} {r.status:<28} {r.seconds:8.1f}  {r.output if r.status == 'ok' else r.error}")
    return "\n".join(lines)

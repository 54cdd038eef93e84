"""Batch runner: the whole pipeline as a DAG of papermill runs.

    python -m helpers run PARAMS.yaml [MORE.yaml ...] [-p key=value ...] [--strategies s_1a,...]
                          [--jobs N] [--scheduler ADDRESS] [--force]

01 -> 02 -> 03 -> (04 -> 05 for each strategy, in parallel) -> 06. Each notebook runs in its own
process. Every parameter is checked before anything runs. A step whose notebook, parameters and
upstream are unchanged since its last success is skipped, so an interrupted run resumes; a failed
step is retried once and stops only what depends on it. Executed notebooks and HTML reports (with
and without code) land in `data_dir_base/reports/`, with an `index.html`.
"""
from __future__ import annotations

import ast
import hashlib
import html
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat
import yaml

from .errors import ParameterError
from .layout import PROJECT_ROOT
from .params import NOTEBOOK_PARAMETERS, check_parameters

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
STRATEGY_NOTEBOOKS = ("04_differentiator", "05_relabel_and_classify")
DAG_NOTEBOOKS = ("01_combine", "02_split", "03_baselines_SA_SB", *STRATEGY_NOTEBOOKS, "06_compare")  # 07 is interactive
STRUCTURAL_KEYS = ("per_notebook", "per_strategy", "strategies")
OK_STATUSES = ("ok", "not applicable", "unchanged")


@dataclass
class Step:
    name: str  # e.g. "04_differentiator_s_1a"
    notebook: str
    parameters: dict[str, Any]
    deps: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # files read from outside the DAG (the sources of 01)
    fingerprint: str = ""
    required: tuple[str, ...] | None = None  # deps that must succeed (default: all); 06 shows failed strategies

    @property
    def must_succeed(self) -> tuple[str, ...]:
        return self.deps if self.required is None else self.required


@dataclass
class StepResult:
    step: str
    status: str  # ok, not applicable, unchanged, failed, not run
    seconds: float = 0.0
    report: str = ""
    error: str = ""
    attempts: int = 0
    headline: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status in OK_STATUSES


@dataclass
class Plan:
    steps: list[Step]
    reports_dir: Path
    metrics_dir: Path
    strategies: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- parameters

def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (numbers, lists, dicts, strings); `key=` is ''."""
    if "=" not in text:
        raise ParameterError(text, "override must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value) if value.strip() else ""  # `key=` means an empty string, not null


def load_parameters(paths: list[str | Path] | str | Path, overrides: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Layer YAML files (later ones win, per-notebook/per-strategy sections merged) and overrides."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict[str, Any] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ParameterError(str(path), "parameters file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParameterError(str(path), f"not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ParameterError(str(path), "must be a YAML mapping of parameter: value")
        for key, value in data.items():
            if key in ("per_notebook", "per_strategy") and isinstance(value, dict):
                section = merged.setdefault(key, {})
                for name, params in value.items():
                    section.setdefault(name, {}).update(params or {})
            else:
                merged[key] = value
    merged.update(dict(parse_override(o) for o in overrides))
    return merged


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The literals assigned in a notebook's cell tagged `parameters`."""
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(str(path), f"needs exactly one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def _checked_section(section: Any, name: str, allowed: set[str], what: str) -> dict[str, dict]:
    if section is None:
        return {}
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        raise ParameterError(name, f"must map each {what} to a mapping of parameters")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise ParameterError(name, f"unknown {what} {unknown[0]!r}; known: {sorted(allowed)}")
    return section


def plan(params: dict[str, Any], strategies: list[str] | None = None) -> Plan:
    """Turn layered parameters into checked steps; nothing runs if any parameter is wrong."""
    from .strategies import STRATEGIES
    from .steps import step_name

    notebooks = list(DAG_NOTEBOOKS)
    known = {n for nb in notebooks for n in NOTEBOOK_PARAMETERS[nb]} - {"strategy"}
    for key in params:
        if key not in known and key not in STRUCTURAL_KEYS:
            hint = " (it is set per step; choose strategies with `strategies` or --strategies)" if key == "strategy" else ""
            raise ParameterError(key, f"unknown parameter{hint}; the pipeline takes {sorted(known | set(STRUCTURAL_KEYS))}")
    per_notebook = _checked_section(params.get("per_notebook"), "per_notebook", set(notebooks), "notebook")
    per_strategy = _checked_section(params.get("per_strategy"), "per_strategy", set(STRATEGIES), "strategy")
    strategy_keys = {k for nb in STRATEGY_NOTEBOOKS for k in NOTEBOOK_PARAMETERS[nb]} - {"strategy"}
    for name, section in per_strategy.items():
        for key in section:
            if key not in strategy_keys:
                raise ParameterError(key, f"unknown parameter in per_strategy.{name}; 04/05 take {sorted(strategy_keys)}")
    chosen = strategies if strategies is not None else params.get("strategies", list(STRATEGIES))
    chosen = check_parameters("06_compare", {**notebook_defaults("06_compare"), "strategies": chosen}).strategies

    base = {k: v for k, v in params.items() if k not in STRUCTURAL_KEYS}

    def step_params(notebook: str, strategy: str | None = None) -> dict[str, Any]:
        values = {**notebook_defaults(notebook),
                  **{k: v for k, v in base.items() if k in NOTEBOOK_PARAMETERS[notebook]},
                  **per_notebook.get(notebook, {})}
        if strategy:
            values.update({k: v for k, v in per_strategy.get(strategy, {}).items() if k in NOTEBOOK_PARAMETERS[notebook]})
            values["strategy"] = strategy
        if notebook == "06_compare":
            values["strategies"] = chosen
        check_parameters(notebook, values)  # malformed or unknown: fails here, naming the notebook
        return values

    steps = [Step("01_combine", "01_combine", step_params("01_combine")),
             Step("02_split", "02_split", step_params("02_split"), ("01_combine",)),
             Step("03_baselines_SA_SB", "03_baselines_SA_SB", step_params("03_baselines_SA_SB"), ("02_split",))]
    finals = []
    for s in chosen:
        diff, cl = step_name("04_differentiator", s), step_name("05_relabel_and_classify", s)
        steps.append(Step(diff, "04_differentiator", step_params("04_differentiator", s), ("03_baselines_SA_SB",)))
        steps.append(Step(cl, "05_relabel_and_classify", step_params("05_relabel_and_classify", s), (diff,)))
        finals.append(cl)
    steps.append(Step("06_compare", "06_compare", step_params("06_compare"), ("03_baselines_SA_SB", *finals),
                      required=("03_baselines_SA_SB",)))

    cfg = check_parameters("01_combine", steps[0].parameters)
    steps[0].inputs = tuple(str(p) for pair in cfg.layout.sources(cfg.sources) for p in pair)
    if cfg.overrides_path:  # corrections from the review widget: a change reruns 01 and what follows
        from .layout import resolve

        steps[0].inputs += (str(resolve(cfg.overrides_path)),)
    _fingerprint(steps)
    return Plan(steps, cfg.layout.reports_dir, cfg.layout.data_dir_base / "metrics", chosen)


def code_hash() -> str:
    """Hash of the helpers package's sources: a change in the code reruns the steps."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def _fingerprint(steps: list[Step]) -> None:
    """Hash of the code, the notebook, its parameters, its outside inputs (size, mtime) and its upstream hashes."""
    by_name = {s.name: s for s in steps}
    code = code_hash()
    for step in steps:  # steps are in dependency order
        h = hashlib.sha256(code.encode())
        h.update((NOTEBOOK_DIR / f"{step.notebook}.ipynb").read_bytes())
        h.update(json.dumps(step.parameters, sort_keys=True, default=str).encode())
        for path in step.inputs:
            st = os.stat(path) if os.path.exists(path) else None
            h.update(f"{path}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
        for dep in step.deps:
            h.update(by_name[dep].fingerprint.encode())
        step.fingerprint = h.hexdigest()


# ---------------------------------------------------------------- executing one step

def execute(step: Step, reports_dir: Path, threads: int = 0) -> StepResult:
    """Run one notebook with papermill in its own process, then render its HTML reports."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    output = reports_dir / f"{step.name}.ipynb"
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(step.parameters, f)
        params_file = f.name
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "papermill", str(NOTEBOOK_DIR / f"{step.notebook}.ipynb"), str(output),
             "-f", params_file, "-k", "python3", "--cwd", str(NOTEBOOK_DIR), "--no-progress-bar"],
            capture_output=True, text=True, env=env)
    finally:
        os.unlink(params_file)
    seconds = time.perf_counter() - start
    if output.is_file():
        render_html(output)
    if proc.returncode != 0:
        return StepResult(step.name, "failed", seconds, str(output), _last_error(proc.stderr))
    return StepResult(step.name, "ok", seconds, str(output))


def _last_error(stderr: str) -> str:
    """The notebook's own exception line from papermill's output."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln and not ln.startswith(("File ", "Traceback"))]
    return (errors[-1] if errors else (lines[-1] if lines else "failed"))[:500]


def render_html(notebook_path: Path) -> tuple[Path, Path]:
    """`x.html` (with code) and `x_nocode.html` (outputs only) beside an executed notebook."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook_path, as_version=4)
    with_code = notebook_path.with_suffix(".html")
    no_code = notebook_path.with_name(notebook_path.stem + "_nocode.html")
    with_code.write_text(HTMLExporter(embed_images=True).from_notebook_node(nb)[0])
    no_code.write_text(HTMLExporter(embed_images=True, exclude_input=True, exclude_input_prompt=True,
                                    exclude_output_prompt=True).from_notebook_node(nb)[0])
    return with_code, no_code


def run_step(step: Step, reports_dir: Path, metrics_dir: Path, threads: int, deps: list[StepResult]) -> StepResult:
    """Execute one step unless a dependency failed; retried once on failure."""
    failed = [d.step for d in deps if not d.succeeded and d.step in step.must_succeed]
    if failed:
        return StepResult(step.name, "not run", error=f"dependency failed: {', '.join(failed)}")
    (metrics_dir / f"{step.name}.json").unlink(missing_ok=True)  # a failed run must not leave old results behind
    result = StepResult(step.name, "failed")
    for attempt in (1, 2):
        result = execute(step, reports_dir, threads)
        result.attempts = attempt
        if result.status == "ok":
            break
    if result.status == "ok":
        status, result.headline = read_headline(metrics_dir / f"{step.name}.json")
        if status == "not applicable":
            result.status = status
    return result


# ---------------------------------------------------------------- the DAG

class State:
    """Fingerprints of the last successful run of each step (reports/runner_state.json)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def unchanged(self, step: Step, reports_dir: Path, metrics_dir: Path) -> bool:
        last = self.data.get(step.name, {})
        return (last.get("fingerprint") == step.fingerprint and last.get("status") in OK_STATUSES
                and (reports_dir / f"{step.name}.ipynb").is_file() and (metrics_dir / f"{step.name}.json").is_file())

    def record(self, step: Step, result: StepResult) -> None:
        from .io import write_json

        with self._lock:
            if result.succeeded and result.status != "unchanged":
                self.data[step.name] = {"fingerprint": step.fingerprint, "status": result.status,
                                        "seconds": round(result.seconds, 2), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            elif not result.succeeded:
                self.data.pop(step.name, None)
            write_json(self.data, self.path)


def run(params: dict[str, Any], strategies: list[str] | None = None, jobs: int = 1, force: bool = False,
        scheduler: str | None = None, on_result: Callable[[StepResult, int, int], None] | None = None) -> tuple[list[StepResult], Plan]:
    """Run the DAG; returns every step's result in plan order."""
    the_plan = plan(params, strategies)
    the_plan.reports_dir.mkdir(parents=True, exist_ok=True)
    state = State(the_plan.reports_dir / "runner_state.json")
    unchanged = set() if force else {s.name for s in the_plan.steps
                                     if state.unchanged(s, the_plan.reports_dir, the_plan.metrics_dir)}
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs)) if jobs > 1 else 0
    results: dict[str, StepResult] = {}

    def finished(step: Step, result: StepResult) -> None:
        if step.name in unchanged and result.status == "unchanged":
            result.report = str(the_plan.reports_dir / f"{step.name}.ipynb")
            _, result.headline = read_headline(the_plan.metrics_dir / f"{step.name}.json")
        results[step.name] = result
        state.record(step, result)
        if on_result:
            on_result(result, len(results), len(the_plan.steps))

    if scheduler:
        _run_dask(the_plan, scheduler, unchanged, threads, finished)
    else:
        _run_local(the_plan, unchanged, jobs, threads, finished)
    ordered = [results[s.name] for s in the_plan.steps]
    write_index(the_plan, ordered)
    return ordered, the_plan


def _threads_for(step: Step, parallel_threads: int) -> int:
    """Strategy steps run side by side and share the cores; the others run alone and take them all (0)."""
    return parallel_threads if step.notebook in STRATEGY_NOTEBOOKS else 0


def _run_local(the_plan: Plan, unchanged: set[str], jobs: int, threads: int,
               finished: Callable[[Step, StepResult], None]) -> None:
    pending = {s.name: s for s in the_plan.steps}
    done: dict[str, StepResult] = {}
    running: dict[Any, Step] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            for name, step in list(pending.items()):
                if all(d in done for d in step.deps) and len(running) < max(1, jobs):
                    del pending[name]
                    if name in unchanged and all(done[d].status == "unchanged" for d in step.deps):
                        result = StepResult(name, "unchanged")
                        done[name] = result
                        finished(step, result)
                        continue
                    deps = [done[d] for d in step.deps]
                    running[pool.submit(run_step, step, the_plan.reports_dir, the_plan.metrics_dir,
                                        _threads_for(step, threads), deps)] = step
            if not running:
                continue
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                step = running.pop(future)
                done[step.name] = future.result()
                finished(step, done[step.name])


def _dask_task(step: Step, reports_dir: Path, metrics_dir: Path, threads: int, skip: bool, *deps: StepResult) -> StepResult:
    if skip and all(d.status == "unchanged" for d in deps):
        return StepResult(step.name, "unchanged")
    return run_step(step, reports_dir, metrics_dir, threads, list(deps))


def _run_dask(the_plan: Plan, address: str, unchanged: set[str], threads: int,
              finished: Callable[[Step, StepResult], None]) -> None:
    from dask.distributed import Client, as_completed

    with Client(address) as client:
        futures, steps_of = {}, {}
        for step in the_plan.steps:
            future = client.submit(_dask_task, step, the_plan.reports_dir, the_plan.metrics_dir, _threads_for(step, threads),
                                   step.name in unchanged, *[futures[d] for d in step.deps],
                                   key=f"{step.name}-{step.fingerprint[:12]}-{time.time_ns()}", pure=False)
            futures[step.name] = future
            steps_of[future.key] = step
        for future in as_completed(list(futures.values())):
            finished(steps_of[future.key], future.result())


# ---------------------------------------------------------------- reports

def read_headline(metrics_path: Path) -> tuple[str, str]:
    """(status, one-line headline) from a step's metrics.json."""
    if not metrics_path.is_file():
        return "missing", ""
    m = json.loads(metrics_path.read_text())
    status = m.get("status", "ok")
    if status != "ok":
        return status, f"{status}: {m.get('reason', '')}"[:200]
    try:
        return status, _headline(m)
    except (KeyError, TypeError, ValueError):  # a headline is a courtesy: never fail a run over one
        return status, ""


def _headline(m: dict) -> str:
    step = m.get("step", "")
    if step == "01_combine":
        return f"{m['rows']} images, {m['per_split'].get('test', 0)} test"
    if step == "02_split":
        return f"{len(m['sets'])} sets written"
    if step == "03_baselines_SA_SB":
        return "; ".join(f"{k} test acc {v['test_accuracy']:.3f}" for k, v in m["runs"].items())
    if step == "06_compare":
        return m["verdict"].get("text", "")[:300]
    if step == "04_differentiator":  # its test rows are only the wrong sets' few: not a score to read
        return f"val acc {m['val_accuracy']:.3f} on {m['metrics']['rows']['val']} rows"
    if "test_accuracy" in m:
        return f"val acc {m['val_accuracy']:.3f}, test acc {m['test_accuracy'] or float('nan'):.3f}"
    return ""


def write_index(the_plan: Plan, results: list[StepResult]) -> Path:
    """reports/index.html: every step with its status, headline metric and report links."""
    rows = []
    for r in results:
        links = ""
        if r.report and Path(r.report).is_file():
            stem = Path(r.report).stem
            links = " · ".join(f'<a href="{html.escape(n)}">{label}</a>' for n, label in (
                (f"{stem}_nocode.html", "report"), (f"{stem}.html", "with code"), (f"{stem}.ipynb", "notebook")))
        colour = {"ok": "#1a7f37", "unchanged": "#57606a", "not applicable": "#9a6700"}.get(r.status, "#cf222e")
        rows.append(f"<tr><td>{html.escape(r.step)}</td><td style='color:{colour}'>{html.escape(r.status)}</td>"
                    f"<td>{r.seconds:.1f}</td><td>{html.escape(r.headline or r.error)}</td><td>{links}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Pipeline reports</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:6px 10px;text-align:left}}</style>
</head><body><h1>Pipeline reports</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}; strategies: {', '.join(the_plan.strategies)}.</p>
<table><tr><th>step</th><th>status</th><th>seconds</th><th>headline</th><th>reports</th></tr>
{''.join(rows)}</table></body></html>"""
    from .io import OutputSet

    index = the_plan.reports_dir / "index.html"
    with OutputSet() as out:
        out.path(index).write_text(page)
    return index


def summary_table(results: list[StepResult]) -> str:
    width = max([len(r.step) for r in results] + [4]) + 2
    lines = [f"{'step':<{width}} {'status':<15} {'seconds':>8}  report / reason"]
    for r in results:
        detail = r.report if r.succeeded else r.error
        lines.append(f"{r.step:<{width}} {r.status:<15} {r.seconds:8.1f}  {detail}")
    return "\n".join(lines)


def comparison_text(metrics_dir: Path) -> str:
    """The comparison table and verdict of 06, for the terminal."""
    path = metrics_dir / "06_compare.json"
    if not path.is_file():
        return ""
    import pandas as pd

    m = json.loads(path.read_text())
    table = pd.DataFrame(m["table"]).set_index("run")
    wanted = [c for c in ("status", "accuracy", "accuracy CI low", "accuracy CI high", "ROC AUC", "roc_auc CI low",
                          "roc_auc CI high", "accuracy vs truth", "unsure relabel accuracy vs truth",
                          "unsures labelled (share)", "unsures relabeled positive") if c in table.columns]
    text = f"{table[wanted].round(3).to_string()}\n\n{m['verdict']['text']}"
    if m.get("flip_finding"):
        flips = pd.DataFrame(m["flip_finding"]).set_index(["baseline", "method"])
        text += f"\n\nFinding the flipped labels (certain, non-test images):\n{flips.round(3).to_string()}"
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        return text

"""Batch runner: the whole pipeline as a DAG of papermill runs.

    python -m helpers run PARAMS.yaml [MORE.yaml ...] [-p key=value ...] [--strategies s_1a,...]
                          [--jobs N] [--scheduler ADDRESS] [--force]

01 -> 02 -> 03 -> (04 -> 05 for each strategy, in parallel) -> 06. Each notebook runs in its own
process. Every parameter is checked before anything runs. A step whose notebook, parameters and
upstream are unchanged since its last success is skipped, so an interrupted run resumes; a failed
step is retried once and stops only what depends on it. Executed notebooks and HTML reports (with
and without code) land in `data_dir_base/reports/`, with an `index.html`. On a Dask cluster whose
workers declare a GPU (`dask worker ADDRESS --resources GPU=1`, one per GPU, each with its own
CUDA_VISIBLE_DEVICES), every training step (03, 04, 05) holds one, so the strategies train side by
side, one per GPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from dask.distributed import Client
from dask.distributed import wait as dask_wait

from ..core.atomic import OUTPUT_LOG_ENV, write_json
from ..core.columns import test_mask
from ..core.errors import ParameterError
from ..core.files import read_csv_file
from ..core.fingerprints import code_hash, file_identity
from ..core.paths import PROJECT_ROOT, resolve
from ..core.progress import JUPYTER_SESSION_ENV
from ..curation.strategies import DEFAULT_STRATEGIES, STRATEGIES
from ..data.combine_split import check_group_column
from ..data.layout import Layout, step_name
from ..data.red_cells import read_red_cell_counts
from ..data.sets import Pair, read_annotations
from ..data.verified import VerifiedStore, verified_labels
from .config import check_parameters
from .lock import run_lock
from .measure import run_measured
from .parameters import DAG_NOTEBOOKS, NOTEBOOK_PARAMETERS, STRATEGY_NOTEBOOKS, notebook_defaults
from .reports import OK_STATUSES, StepResult, read_headline, render_html, write_index

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
STRUCTURAL_KEYS = ("per_notebook", "per_strategy", "strategies")
TRAINING_NOTEBOOKS = ("03_baselines_SA_SB", *STRATEGY_NOTEBOOKS)
GPU_RESOURCE = "GPU"  # on a cluster whose workers declare it, each training step holds one


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
class Plan:
    steps: list[Step]
    reports_dir: Path
    metrics_dir: Path
    strategies: list[str] = field(default_factory=list)
    write_dirs: list[Path] = field(default_factory=list)  # the folders the steps write: one run at a time in each


# ---------------------------------------------------------------- the plan

def _checked_section(section: Any, name: str, allowed: set[str], what: str) -> dict[str, dict]:
    if section is None:
        return {}
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        raise ParameterError(name, f"must map each {what} to a mapping of parameters")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise ParameterError(name, f"unknown {what} {unknown[0]!r}; known: {sorted(allowed)}")
    return section


def _check_wrong_label_strategies(chosen: list[str], baselines: dict[str, Any]) -> None:
    """Strategies that prune or fix wrong labels use 03's out-of-fold label issues: refuse the run
    before anything starts when 03 would not compute them."""
    curating = [s for s in chosen if STRATEGIES[s].wrong_labels != "keep"]
    if curating and baselines["wrong_from"] != "out_of_fold":
        raise ParameterError("wrong_from", f"is {baselines['wrong_from']!r}, but {', '.join(curating)} prune or fix "
                                           "the label issues 03 finds out-of-fold: set wrong_from: out_of_fold")
    unfolded = sorted({STRATEGIES[s].baseline for s in curating} - set(baselines["fold_baselines"]))
    if unfolded:
        raise ParameterError("fold_baselines", f"leaves out {', '.join(unfolded)}, whose out-of-fold label issues "
                                               f"{', '.join(curating)} prune or fix")


def _check_test_review(budget: int, verified_path: str, layout: Layout) -> None:
    """A simulated review larger than the test rows, or a verified-labels file with a bad row, is
    refused before anything runs, naming the parameter or the file and line. Once 01 has drawn the
    test rows every check is made (one read of them); on a first run, only what can be told without
    them (the file's columns), and 06 checks the rest before its own work."""
    path = resolve(verified_path) if verified_path else None
    has_file = path is not None and path.is_file()
    if not layout.combined.ann.is_file():
        if has_file:
            VerifiedStore(path).read()
        return
    if not budget and not has_file:
        return
    combined = read_annotations(layout.combined.ann)
    test_rows = int(test_mask(combined).sum())
    if budget > test_rows:
        raise ParameterError("review_budget", f"is {budget}, more than the {test_rows} test rows of "
                                              f"{layout.combined.ann}")
    if has_file:
        verified_labels(path, combined, layout.scheme)


def _check_group_by(group_by: str, sources: list[Pair]) -> None:
    """A `group_by` column a source lacks is refused before anything runs (01 would refuse it only once
    the run had begun, and its failure would make the next unchanged run recompute everything after it).
    A source that is not there yet is left to 01, which names it."""
    if group_by:
        for pair in sources:
            if pair.ann.is_file():
                check_group_column(list(read_csv_file(pair.ann, nrows=0).columns), group_by, pair.ann)


def plan(params: dict[str, Any], strategies: list[str] | None = None) -> Plan:
    """Turn layered parameters into checked steps; nothing runs if any parameter is wrong."""
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
    chosen = strategies if strategies is not None else params.get("strategies", list(DEFAULT_STRATEGIES))
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
        diff, final = step_name("04_differentiator", s), step_name("05_relabel_and_classify", s)
        steps.append(Step(diff, "04_differentiator", step_params("04_differentiator", s), ("03_baselines_SA_SB",)))
        steps.append(Step(final, "05_relabel_and_classify", step_params("05_relabel_and_classify", s), (diff,)))
        finals.append(final)
    steps.append(Step("06_compare", "06_compare", step_params("06_compare"), ("03_baselines_SA_SB", *finals),
                      required=("03_baselines_SA_SB",)))

    _check_wrong_label_strategies(chosen, steps[2].parameters)
    layout = _outside_inputs(steps)
    _fingerprint(steps)
    return Plan(steps, layout.reports_dir, layout.metrics_dir, chosen, [layout.data_dir, layout.data_dir_base])


def _outside_inputs(steps: list[Step]) -> Layout:
    """Check the files the run reads from outside the DAG and give them to the steps that read them
    (a change reruns those steps and what follows); returns the run's layout. What a step would refuse
    for reasons known now is refused here, before anything runs."""
    cfg = check_parameters("01_combine", steps[0].parameters)
    sources = cfg.layout.sources(cfg.sources)
    _check_group_by(cfg.group_by, sources)
    steps[0].inputs = tuple(str(p) for pair in sources for p in pair)
    if cfg.overrides_path:  # corrections from the review widget: a change reruns 01 and what follows
        steps[0].inputs += (str(resolve(cfg.overrides_path)),)
    compare_params = steps[-1].parameters
    if compare_params["verified_path"]:  # verified test labels change scoring only: a change reruns 06 alone
        steps[-1].inputs += (str(resolve(compare_params["verified_path"])),)
    _check_test_review(compare_params["review_budget"], compare_params["verified_path"], cfg.layout)
    if compare_params["rbc_counts_path"]:  # red cells per slide change 06's false positives per µl alone
        counts = resolve(compare_params["rbc_counts_path"])
        read_red_cell_counts(counts, cfg.layout.combined.ann if cfg.layout.combined.ann.is_file() else None)
        steps[-1].inputs += (str(counts),)
    return cfg.layout


def _fingerprint(steps: list[Step]) -> None:
    """Hash of the code, the notebook, its parameters, its outside inputs and its upstream hashes."""
    by_name = {s.name: s for s in steps}
    code = code_hash()
    for step in steps:  # steps are in dependency order
        h = hashlib.sha256(code.encode())
        h.update((NOTEBOOK_DIR / f"{step.notebook}.ipynb").read_bytes())
        h.update(json.dumps(step.parameters, sort_keys=True, default=str).encode())
        for path in step.inputs:
            h.update(file_identity(path).encode())
        for dep in step.deps:
            h.update(by_name[dep].fingerprint.encode())
        step.fingerprint = h.hexdigest()


# ---------------------------------------------------------------- executing one step

# A killed runner must not leave its papermill process (and through ipykernel's parent poller, the
# kernel) running: the child asks the kernel (prctl PR_SET_PDEATHSIG) to kill it when its parent dies,
# then becomes papermill. Linux only; elsewhere papermill runs directly.
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                    "parent = int(sys.argv[1])\n"
                    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
                    "if os.getppid() != parent: sys.exit(1)\n"
                    "os.execv(sys.executable, [sys.executable, '-m', 'papermill', *sys.argv[2:]])\n")


def _papermill_command(args: list[str]) -> list[str]:
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
    return [sys.executable, "-m", "papermill", *args]


def execute(step: Step, reports_dir: Path, threads: int = 0) -> StepResult:
    """Run one notebook with papermill in its own process, then render its HTML reports.

    The notebook executes into a hidden partial file that replaces the report only when papermill
    has finished (a killed run leaves the last report as it was); the parameters file and the
    kernel's connection file live in the reports folder and are replaced by the next run.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    output = reports_dir / f"{step.name}.ipynb"
    partial = reports_dir / f".{step.name}.partial.ipynb"
    params_file = reports_dir / f".{step.name}.parameters.yaml"
    runtime = reports_dir / ".runtime" / step.name
    shutil.rmtree(runtime, ignore_errors=True)  # a killed run's kernel connection file
    runtime.mkdir(parents=True)
    params_file.write_text(yaml.safe_dump(step.parameters))
    output_log = runtime / "outputs.txt"
    # The kernel's connection file (jupyter_client makes it with tempfile) and any other temp file of
    # papermill or the kernel land in the step's runtime folder, which a killed run leaves to the next.
    # A batch run has no one watching its progress bars (core.progress): not even a runner started from JupyterLab.
    env = {**{k: v for k, v in os.environ.items() if k != JUPYTER_SESSION_ENV},
           "JUPYTER_RUNTIME_DIR": str(runtime), "TMPDIR": str(runtime), OUTPUT_LOG_ENV: str(output_log)}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    try:
        proc, peak_bytes = run_measured(
            _papermill_command([str(NOTEBOOK_DIR / f"{step.notebook}.ipynb"), str(partial), "-f", str(params_file),
                                "-k", "python3", "--cwd", str(NOTEBOOK_DIR), "--no-progress-bar"]), env, runtime)
        written = output_log.read_text().splitlines() if output_log.is_file() else []
    finally:
        params_file.unlink(missing_ok=True)
        shutil.rmtree(runtime, ignore_errors=True)
        with suppress(OSError):  # other steps may still use it
            runtime.parent.rmdir()
    seconds = time.perf_counter() - start
    if partial.is_file() and proc.returncode >= 0:  # papermill finished (a failing cell is a finished report)
        os.replace(partial, output)
        render_html(output)
    partial.unlink(missing_ok=True)
    peak_mb = round(peak_bytes / 2**20, 1)
    if proc.returncode != 0:
        return StepResult(step.name, "failed", seconds, str(output), notebook_error(output, proc.stderr),
                          peak_host_mb=peak_mb)
    return StepResult(step.name, "ok", seconds, str(output), outputs={p: file_identity(p) for p in dict.fromkeys(written)},
                      peak_host_mb=peak_mb)


def notebook_error(notebook: Path, stderr: str) -> str:
    """The notebook's own exception (`Name: message`) from its error output, else from papermill's log."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
        for cell in cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"[:500]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln and not ln.startswith(("File ", "Traceback"))]
    return (errors[-1] if errors else (lines[-1] if lines else "failed"))[:500]


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
        """The step's last success had the same fingerprint, and everything it wrote is still as it wrote it."""
        last = self.data.get(step.name, {})
        return (last.get("fingerprint") == step.fingerprint and last.get("status") in OK_STATUSES
                and (reports_dir / f"{step.name}.ipynb").is_file() and (metrics_dir / f"{step.name}.json").is_file()
                and all(file_identity(path) == identity for path, identity in last.get("outputs", {}).items()))

    def reproduced(self, step: Step, result: StepResult) -> bool:
        """Whether a step that ran again wrote exactly what its last success with this fingerprint wrote
        (atomic keeps a byte-identical file as it was), so the steps after it need not run again."""
        last = self.data.get(step.name, {})
        return (result.succeeded and last.get("fingerprint") == step.fingerprint
                and last.get("outputs") == result.outputs)

    def record(self, step: Step, result: StepResult) -> None:
        with self._lock:
            if result.succeeded and result.status != "unchanged":
                self.data[step.name] = {"fingerprint": step.fingerprint, "status": result.status,
                                        "seconds": round(result.seconds, 2), "peak_host_mb": result.peak_host_mb,
                                        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "outputs": result.outputs}
            elif not result.succeeded and step.name in self.data:
                # the last success's fingerprint and outputs stay, marked failed: never skipped on them, but a
                # rerun that reproduces them lets the steps after it be skipped
                self.data[step.name]["status"] = "failed"
            write_json(self.data, self.path)


def run_pipeline(params: dict[str, Any], strategies: list[str] | None = None, jobs: int = 1, force: bool = False,
                 scheduler: str | None = None,
                 on_result: Callable[[StepResult, int, int], None] | None = None) -> tuple[list[StepResult], Plan]:
    """Run the DAG; returns every step's result in plan order. RunLocked when another run is using
    one of the folders the steps write."""
    the_plan = plan(params, strategies)
    with run_lock(the_plan.write_dirs):
        if force:  # a forced run starts every training from scratch
            for checkpoint in the_plan.reports_dir.parent.glob("*/checkpoint*.pt"):
                checkpoint.unlink()
        return _run_plan(the_plan, jobs, force, scheduler, on_result), the_plan


def _run_plan(the_plan: Plan, jobs: int, force: bool, scheduler: str | None,
              on_result: Callable[[StepResult, int, int], None] | None) -> list[StepResult]:
    the_plan.reports_dir.mkdir(parents=True, exist_ok=True)
    state = State(the_plan.reports_dir / "runner_state.json")
    unchanged = set() if force else {s.name for s in the_plan.steps
                                     if state.unchanged(s, the_plan.reports_dir, the_plan.metrics_dir)}
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs)) if jobs > 1 else 0
    results: dict[str, StepResult] = {}
    as_before: set[str] = set()  # steps whose outputs are as the steps after them last saw them

    def finished(step: Step, result: StepResult) -> None:
        if step.name in unchanged and result.status == "unchanged":
            result.report = str(the_plan.reports_dir / f"{step.name}.ipynb")
            _, result.headline = read_headline(the_plan.metrics_dir / f"{step.name}.json")
        if result.status == "unchanged" or state.reproduced(step, result):
            as_before.add(step.name)
        results[step.name] = result
        state.record(step, result)
        if on_result:
            on_result(result, len(results), len(the_plan.steps))

    if scheduler:
        _run_dask(the_plan, scheduler, unchanged, as_before, threads, finished)
    else:
        _run_local(the_plan, unchanged, as_before, jobs, threads, finished)
    ordered = [results[s.name] for s in the_plan.steps]
    write_index(the_plan.reports_dir, the_plan.strategies, ordered)
    return ordered


def _threads_for(step: Step, parallel_threads: int) -> int:
    """Strategy steps run side by side and share the cores; the others run alone and take them all (0)."""
    return parallel_threads if step.notebook in STRATEGY_NOTEBOOKS else 0


def _drive(the_plan: Plan, unchanged: set[str], as_before: set[str], finished: Callable[[Step, StepResult], None],
           submit: Callable[[Step, list[StepResult]], Any], wait_first: Callable[[list[Any]], Any],
           limit: int) -> None:
    """Submit each step once its dependencies are done, at most `limit` at a time, in plan order. An
    unchanged step is skipped when every dependency is `as_before` (skipped too, or ran again and
    reproduced its outputs byte for byte); `finished` adds to that set.

    The client walks the DAG itself (results are small; the data sits on the shared disk), so a
    cluster places each step by its workers' load alone, not beside the worker that ran its parent."""
    pending = {s.name: s for s in the_plan.steps}
    done: dict[str, StepResult] = {}
    running: dict[Any, Step] = {}
    while pending or running:
        for name, step in list(pending.items()):
            if all(d in done for d in step.deps) and len(running) < limit:
                del pending[name]
                if name in unchanged and all(d in as_before for d in step.deps):
                    done[name] = StepResult(name, "unchanged")
                    finished(step, done[name])
                    continue
                running[submit(step, [done[d] for d in step.deps])] = step
        if not running:
            continue
        for future in wait_first(list(running)):
            step = running.pop(future)
            done[step.name] = future.result()
            finished(step, done[step.name])


def _run_local(the_plan: Plan, unchanged: set[str], as_before: set[str], jobs: int, threads: int,
               finished: Callable[[Step, StepResult], None]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        def submit(step: Step, deps: list[StepResult]) -> Any:
            return pool.submit(run_step, step, the_plan.reports_dir, the_plan.metrics_dir,
                               _threads_for(step, threads), deps)

        _drive(the_plan, unchanged, as_before, finished, submit,
               lambda futures: wait(futures, return_when=FIRST_COMPLETED).done, max(1, jobs))


def _gpu_workers(client: Client) -> bool:
    """Whether any worker of the cluster declares the GPU resource (`dask worker ... --resources GPU=1`)."""
    return any(GPU_RESOURCE in worker.get("resources", {}) for worker in client.scheduler_info()["workers"].values())


def step_resources(step: Step, gpu_workers: bool) -> dict[str, float] | None:
    """What a step asks of a Dask worker: one GPU for a training step where the cluster has GPU workers."""
    return {GPU_RESOURCE: 1} if gpu_workers and step.notebook in TRAINING_NOTEBOOKS else None


def _run_dask(the_plan: Plan, address: str, unchanged: set[str], as_before: set[str], threads: int,
              finished: Callable[[Step, StepResult], None]) -> None:
    with Client(address) as client:
        gpus = _gpu_workers(client)

        def submit(step: Step, deps: list[StepResult]) -> Any:
            return client.submit(run_step, step, the_plan.reports_dir, the_plan.metrics_dir,
                                 _threads_for(step, threads), deps,
                                 key=f"{step.name}-{step.fingerprint[:12]}-{time.time_ns()}", pure=False,
                                 resources=step_resources(step, gpus))

        _drive(the_plan, unchanged, as_before, finished, submit,
               lambda futures: dask_wait(futures, return_when="FIRST_COMPLETED").done, len(the_plan.steps))

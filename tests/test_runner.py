import json
import os
import sys
import time
from pathlib import Path

import pytest

import helpers.run.runner as runner
from helpers.core.errors import ParameterError
from helpers.core.paths import PROJECT_ROOT
from helpers.run.cli import main
from helpers.run.measure import run_measured
from helpers.run.parameter_files import load_parameters
from helpers.run.parameters import training_rows
from helpers.run.reports import StepResult
from helpers.run.runner import plan, run_pipeline


def _yaml(tmp_path, text, name="params.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _dirs(tmp_path):
    return {"data_dir": str(tmp_path / "d"), "data_dir_n": str(tmp_path / "n"), "data_dir_base": str(tmp_path / "runs")}


def test_unknown_key_is_rejected_before_anything_runs(tmp_path):
    with pytest.raises(ParameterError, match="'epochz': unknown parameter"):
        plan(load_parameters(_yaml(tmp_path, "data_dir: x\nepochz: 3\n")))
    with pytest.raises(ParameterError, match="set per step"):
        plan({"strategy": "s_1a"})
    with pytest.raises(ParameterError, match="unknown notebook '07_nope'"):
        plan({"per_notebook": {"07_nope": {"epochs": 1}}})
    with pytest.raises(ParameterError, match="unknown strategy 's_9x'"):
        plan({"per_strategy": {"s_9x": {"epochs": 1}}})


def test_malformed_value_is_rejected_with_its_name(tmp_path):
    with pytest.raises(ParameterError, match="01_combine: parameter 'test_frac'"):
        plan({"test_frac": 2})
    with pytest.raises(ParameterError, match="04_differentiator: parameter 'loss'"):
        plan({"per_strategy": {"s_2b": {"loss": "hinge"}}})
    with pytest.raises(ParameterError, match="'strategies'"):
        plan({"strategies": ["s_1a", "s_7q"]})


def test_layering_files_sections_and_overrides(tmp_path):
    base = _yaml(tmp_path, "epochs: 5\nper_strategy: {s_1a: {epochs: 7}}\n", "a.yaml")
    extra = _yaml(tmp_path, "seed: 3\nper_strategy: {s_1a: {lr: 0.01}}\nper_notebook: {03_baselines_SA_SB: {epochs: 9}}\n", "b.yaml")
    params = load_parameters([base, extra], ["width=8", "strategies=[s_1a, s_3b]"])
    steps = {s.name: s for s in plan(params).steps}
    assert set(steps) == {"01_combine", "02_split", "03_baselines_SA_SB", "04_differentiator_s_1a",
                          "05_relabel_and_classify_s_1a", "04_differentiator_s_3b", "05_relabel_and_classify_s_3b",
                          "06_compare"}
    assert steps["03_baselines_SA_SB"].parameters["epochs"] == 9
    expected = {"epochs": 7, "lr": 0.01, "width": 8, "seed": 3, "strategy": "s_1a"}
    assert {k: steps["04_differentiator_s_1a"].parameters[k] for k in expected} == expected
    assert steps["04_differentiator_s_3b"].parameters["epochs"] == 5
    assert steps["06_compare"].parameters["strategies"] == ["s_1a", "s_3b"]
    assert "epochs" not in steps["01_combine"].parameters


def _fake_execute(fail: set[str], calls: list[str]):
    def execute(step, reports_dir, threads=0):
        calls.append(step.name)
        if step.name in fail:
            return StepResult(step.name, "failed", error="boom")
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / f"{step.name}.ipynb").write_text("{}")
        metrics = Path(step.parameters["data_dir_base"]) / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        (metrics / f"{step.name}.json").write_text(json.dumps({"step": step.notebook, "status": "ok"}))
        return StepResult(step.name, "ok", report=str(reports_dir / f"{step.name}.ipynb"))
    return execute


def test_a_failing_step_stops_only_its_dependents_and_is_retried(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute({"04_differentiator_s_1b"}, calls))
    results, _ = run_pipeline({**_dirs(tmp_path), "strategies": ["s_1a", "s_1b", "s_2a"]}, jobs=2)
    status = {r.step: r for r in results}
    assert status["04_differentiator_s_1b"].status == "failed" and status["04_differentiator_s_1b"].attempts == 2
    assert calls.count("04_differentiator_s_1b") == 2
    assert status["05_relabel_and_classify_s_1b"].status == "not run"
    for s in ("s_1a", "s_2a"):
        assert status[f"05_relabel_and_classify_{s}"].status == "ok"
    assert status["06_compare"].status == "ok"  # the comparison still runs and shows the failed strategy
    index = (tmp_path / "runs" / "reports" / "index.html").read_text()
    assert "04_differentiator_s_1b" in index and "boom" in index


def test_second_run_skips_every_unchanged_step(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    params = {**_dirs(tmp_path), "strategies": ["s_1a"]}
    run_pipeline(params)
    first = len(calls)
    results, _ = run_pipeline(params)
    assert len(calls) == first and {r.status for r in results} == {"unchanged"}
    results, _ = run_pipeline({**params, "per_strategy": {"s_1a": {"relabel_thresh": 0.8}}})
    rerun = [r.step for r in results if r.status == "ok"]
    assert rerun == ["05_relabel_and_classify_s_1a", "06_compare"]  # only what the change touches
    results, _ = run_pipeline(params, force=True)
    assert {r.status for r in results} == {"ok"}


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "execute", _fake_execute({"02_split"}, []))
    params = _yaml(tmp_path, "".join(f"{k}: {v}\n" for k, v in _dirs(tmp_path).items()))
    assert main(["run", str(params), "--strategies", "s_1a"]) == 1
    out = capsys.readouterr().out
    assert "02_split" in out and "failed" in out and "not run" in out and "index.html" in out
    assert main(["run", str(_yaml(tmp_path, "sedd: 1\n", "bad.yaml"))]) == 2


def test_strategies_all_runs_every_strategy_of_the_table(tmp_path, monkeypatch):
    import helpers.run.cli as cli
    from helpers.curation.strategies import STRATEGIES

    asked = []
    monkeypatch.setattr(cli, "run_pipeline", lambda params, strategies, **kw: asked.append(strategies) or ([], plan(params)))
    params = _yaml(tmp_path, "".join(f"{k}: {v}\n" for k, v in _dirs(tmp_path).items()) + "strategies: [s_1a]\n")
    main(["run", str(params), "--strategies", "all"])
    main(["run", str(params)])
    assert asked == [list(STRATEGIES), None]  # None: the parameters' own (s_1a)


def test_new_label_overrides_rerun_the_pipeline_from_01(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    params = {**_dirs(tmp_path), "strategies": ["s_1a"], "overrides_path": str(tmp_path / "overrides.csv")}
    run_pipeline(params)
    from helpers.data.overrides import OverrideStore

    OverrideStore(tmp_path / "overrides.csv").add(["patient_combined_images:3"], ["non-parasite"], "parasite")
    results, _ = run_pipeline(params)
    assert results[0].step == "01_combine" and results[0].status == "ok"  # the corrections are picked up
    results, _ = run_pipeline(params)
    assert {r.status for r in results} == {"unchanged"}


def test_new_verified_test_labels_rerun_only_the_comparison(tmp_path, monkeypatch):
    """A verified label changes scoring only: no training step reruns for it."""
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    params = {**_dirs(tmp_path), "strategies": ["s_1a"], "verified_path": str(tmp_path / "verified.csv")}
    run_pipeline(params)
    from helpers.data.verified import VerifiedStore

    VerifiedStore(tmp_path / "verified.csv", who="tester").add(["patient_combined_images:3"], "parasite",
                                                                annotated=["non-parasite"])
    results, _ = run_pipeline(params)
    assert [r.step for r in results if r.status == "ok"] == ["06_compare"]
    assert {r.status for r in results if r.step != "06_compare"} == {"unchanged"}


def _dirs_with_combined(tmp_path, splits: list[str]) -> dict:
    """The folders, with a combined annotations file as 01 leaves it: images a:0, a:1, ... in `splits`."""
    dirs = _dirs(tmp_path)
    combined = Path(dirs["data_dir"]) / "combined_ann.csv"
    combined.parent.mkdir(parents=True)
    rows = [f"{i},{1.0 if i == 0 else 0.0},a:{i},{split}" for i, split in enumerate(splits)]
    combined.write_text("index,annotation,image_id,split\n" + "\n".join(rows) + "\n")
    return dirs


def test_review_budget_above_the_test_rows_is_refused_before_anything_runs(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    layout_dirs = _dirs_with_combined(tmp_path, ["test", "test", "train"])
    params = {**layout_dirs, "strategies": ["s_1a"], "truth_path": "truth.csv", "review_budget": 3}
    with pytest.raises(ParameterError, match="'review_budget'.*is 3, more than the 2 test rows"):
        run_pipeline(params)
    assert calls == []


def test_a_bad_verified_label_is_refused_before_anything_runs(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    layout_dirs = _dirs_with_combined(tmp_path, ["test", "train"])
    from helpers.core.errors import InputError
    from helpers.data.verified import VerifiedStore

    VerifiedStore(tmp_path / "verified.csv", who="tester").add(["a:1"], "parasite", annotated=["non-parasite"])
    with pytest.raises(InputError, match="verified.csv: line 2: image 'a:1' is not a test row"):
        run_pipeline({**layout_dirs, "strategies": ["s_1a"], "verified_path": str(tmp_path / "verified.csv")})
    assert calls == []


def test_a_change_in_the_helpers_code_reruns_the_steps(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", _fake_execute(set(), calls))
    params = {**_dirs(tmp_path), "strategies": ["s_1a"]}
    run_pipeline(params)
    monkeypatch.setattr(runner, "code_hash", lambda: "edited")
    results, _ = run_pipeline(params)
    assert {r.status for r in results} == {"ok"}


def test_a_file_extends_the_files_it_builds_on(tmp_path):
    (tmp_path / "profiles").mkdir()
    _yaml(tmp_path / "profiles", "epochs: 5\nlr: 0.01\naugment: flips_rot90\n", "recipe.yaml")
    mine = _yaml(tmp_path, "extends: profiles/recipe.yaml\nepochs: 7\n", "mine.yaml")
    params = load_parameters([mine], ["lr=0.02"])
    assert (params["epochs"], params["lr"], params["augment"]) == (7, 0.02, "flips_rot90") and "extends" not in params


def test_extends_a_missing_file_or_in_a_circle_is_refused_by_name(tmp_path):
    missing = _yaml(tmp_path, "extends: nowhere.yaml\n", "a.yaml")
    with pytest.raises(ParameterError, match=r"nowhere\.yaml.*not found.*extended by .*a\.yaml"):
        load_parameters(missing)
    _yaml(tmp_path, "extends: c.yaml\n", "b.yaml")
    circle = _yaml(tmp_path, "extends: b.yaml\n", "c.yaml")
    with pytest.raises(ParameterError, match="extends itself"):
        load_parameters(circle)
    with pytest.raises(ParameterError, match="extends must be"):
        load_parameters(_yaml(tmp_path, "extends: {a: 1}\n", "d.yaml"))


def test_the_demo_profile_is_the_recommended_recipe_trained_less_on_the_demo_data():
    recommended = load_parameters(PROJECT_ROOT / "parameters" / "recommended.yaml")
    demo = load_parameters(PROJECT_ROOT / "parameters" / "demo.yaml")
    # issue 34's product decision: the demo may train fewer epochs (benchmarks/demo_time.py measured it)
    assert {k for k in recommended if demo[k] != recommended[k]} == {"epochs", "min_steps"}
    assert demo["epochs"] < recommended["epochs"] and demo["min_steps"] < recommended["min_steps"]
    steps = {s.name: s.parameters for s in plan(demo).steps}
    assert steps["03_baselines_SA_SB"]["augment"] == "flips_rot90" and steps["03_baselines_SA_SB"]["tta"] is True
    # the product decision: the seed's six strategies and at most three others
    from helpers.curation.strategies import SEED_STRATEGIES

    others = [s for s in demo["strategies"] if s not in SEED_STRATEGIES]
    assert set(SEED_STRATEGIES) <= set(demo["strategies"]) and len(others) <= 3
    # the GPU profile is the recommended recipe with device knobs and a larger batch only
    gpu = load_parameters(PROJECT_ROOT / "parameters" / "recommended-gpu.yaml")
    assert {k for k in gpu if gpu[k] != recommended.get(k)} <= {"batch_size", "lr", "min_steps_per_epoch", "amp",
                                                               "images_on_device", "compile"}
    rows = training_rows(PROJECT_ROOT / "parameters" / "recommended-gpu.yaml")  # its recipe, extends included
    assert rows["arch"] == recommended["arch"] and rows["batch_size"] == 512 and "data_dir" not in demo.keys() & rows


def test_the_index_opens_with_the_verdict_and_the_chart_once_06_has_run(tmp_path):
    from helpers.run.reports import StepResult, write_index

    reports, metrics = tmp_path / "runs" / "reports", tmp_path / "runs" / "metrics"
    reports.mkdir(parents=True)
    results = [StepResult("01_combine", "ok")]
    assert "Which strategy" not in write_index(reports, ["s_1a"], results).read_text()  # no 06 yet
    metrics.mkdir()
    (metrics / "06_compare.json").write_text(json.dumps({"verdict": {"text": "Best by test ROC AUC: s_1a <0.9>."}}))
    (reports / "comparison.png").write_bytes(b"png")
    page = write_index(reports, ["s_1a"], results).read_text()
    assert page.index("Best by test ROC AUC: s_1a &lt;0.9&gt;.") < page.index("<h2>Steps") < page.index("01_combine")
    assert '<img src="comparison.png"' in page


def test_on_gpu_workers_each_training_step_holds_one_gpu(tmp_path, monkeypatch):
    """Two workers declaring one GPU each, two threads each: the four strategies' training steps run
    side by side on the two workers, never two at once on one worker's GPU."""
    from dask.distributed import LocalCluster, get_worker

    spans: list[tuple[str, str, float, float]] = []
    fake = _fake_execute(set(), [])

    def timed(step, reports_dir, threads=0):
        start = time.perf_counter()
        time.sleep(0.3 if step.notebook in runner.TRAINING_NOTEBOOKS else 0.0)
        spans.append((step.notebook, get_worker().address, start, time.perf_counter()))
        return fake(step, reports_dir, threads)

    monkeypatch.setattr(runner, "execute", timed)
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None,
                      resources={"GPU": 1}) as cluster:
        results, _ = run_pipeline({**_dirs(tmp_path), "strategies": ["s_1a", "s_1b", "s_2a", "s_2b"]},
                                  scheduler=cluster.scheduler_address)
    assert all(r.succeeded for r in results)
    training = [s for s in spans if s[0] in runner.TRAINING_NOTEBOOKS]
    assert len(training) == 9 and len({worker for _, worker, _, _ in training}) == 2

    def overlap(a, b) -> bool:
        return a[2] < b[3] and b[2] < a[3]

    pairs = [(a, b) for i, a in enumerate(training) for b in training[i + 1:] if overlap(a, b)]
    assert pairs, "no two training steps ran side by side"
    assert all(a[1] != b[1] for a, b in pairs), "two training steps shared one worker's GPU"


def test_without_gpu_workers_steps_ask_for_nothing():
    steps = {s.notebook: s for s in plan({"strategies": ["s_1a"]}).steps}
    assert runner.step_resources(steps["05_relabel_and_classify"], gpu_workers=True) == {"GPU": 1}
    assert runner.step_resources(steps["03_baselines_SA_SB"], gpu_workers=True) == {"GPU": 1}
    assert runner.step_resources(steps["06_compare"], gpu_workers=True) is None
    assert runner.step_resources(steps["05_relabel_and_classify"], gpu_workers=False) is None


def test_a_step_command_is_measured_for_its_peak_memory(tmp_path):
    grow = ("import time; block = bytearray(150 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(2.5); "
            "print('done')")  # held long enough for the sampler (once a second) to see it
    proc, peak = run_measured([sys.executable, "-c", grow], dict(os.environ), tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "done"
    assert 150 * 2**20 < peak < 300 * 2**20
    failed, _ = run_measured([sys.executable, "-c", "import sys; sys.exit('no')"], dict(os.environ), tmp_path)
    assert failed.returncode == 1 and "no" in failed.stderr
    assert list(tmp_path.iterdir()) == []  # its capture files are gone

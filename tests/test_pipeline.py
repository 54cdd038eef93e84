"""The whole DAG through the runner, with real notebooks on tiny data (the smoke parameters)."""
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from dask.distributed import LocalCluster
from notebook_runs import images_shown, progress_bars, read_metrics, run_notebook

import helpers.run.runner as runner
from helpers.core.errors import InputError
from helpers.core.paths import PROJECT_ROOT
from helpers.run.parameter_files import load_parameters
from helpers.run.reports import StepResult
from helpers.run.runner import run_pipeline

SMOKE = PROJECT_ROOT / "parameters" / "smoke.yaml"
pytestmark = pytest.mark.slow


def _params(tiny_demo, base, **extra):
    return {**load_parameters(SMOKE), "data_dir": str(tiny_demo["data_dir"]), "data_dir_n": str(tiny_demo["data_dir_n"]),
            "data_dir_base": str(base), "truth_path": str(tiny_demo["truth"]),
            "overrides_path": str(base / "overrides.csv"), **extra}


def test_whole_dag_with_reports_then_a_rerun_skips_it_and_changed_steps_run_on_dask(tiny_demo, tmp_path, monkeypatch):
    """One pipeline, three runs: all of it locally; again, where nothing executes; and once more on a
    Dask cluster with one strategy's threshold changed, where only what that change touches executes."""
    base = tmp_path / "runs"
    params = _params(tiny_demo, base, wrong_from="out_of_fold", folds=2, review_budget=5,
                     verified_path=str(tmp_path / "verified.csv"))
    results, the_plan = run_pipeline(params, jobs=2)
    assert len(results) == 22
    assert all(r.status in ("ok", "not applicable") for r in results), [(r.step, r.status, r.error) for r in results]
    assert all(r.peak_host_mb > 50 for r in results)  # a kernel with torch loaded: measured, not left at 0
    reports = base / "reports"
    for r in results:
        stem = Path(r.report).stem
        assert (reports / f"{stem}.html").is_file()
        no_code = (reports / f"{stem}_nocode.html").read_text()
        assert "check_parameters" not in no_code  # outputs only
        assert not progress_bars(nbformat.read(r.report, as_version=4)), r.step  # batch reports show no progress bars
        assert "it/s]" not in no_code
    assert "check_parameters" in (reports / "03_baselines_SA_SB.html").read_text()
    index = (reports / "index.html").read_text()
    assert index.index("Which strategy gives the best classifier") < index.index("<h2>Steps")  # verdict first
    # issue 34: one sentence of what to use, then the chart, then the full text; a gallery per strategy
    sentence = read_metrics(base, "06_compare")["verdict"]["sentence"]
    assert sentence.startswith(("Use ", "Keep SB")) and "points of test accuracy over SB (95% CI" in sentence
    assert index.index(sentence) < index.index('<img src="comparison.png"') < index.index("Verdict: ")
    assert all(f'href="gallery_{s}.html"' in index and (reports / f"gallery_{s}.html").is_file()
               for s in the_plan.strategies)
    s_1a = (reports / "05_relabel_and_classify_s_1a_nocode.html").read_text()
    assert "Wrong labels" not in s_1a  # s_1a keeps the given labels
    if read_metrics(base, "05_relabel_and_classify_s_1a")["status"] == "ok":  # its differentiator may not apply here
        assert "How the split would change" in s_1a
    assert "not counted: a crop is not a red cell" in (reports / "06_compare_nocode.html").read_text()
    assert '<img src="comparison.png"' in index and (reports / "comparison.png").stat().st_size > 1000
    assert all(r.step in index for r in results) and "06_compare_nocode.html" in index
    # a strategy's final classifier keeps the origin's file names (`cl`)
    assert all((base / "s_2b" / name).is_file() for name in ("combined_images_cl.npy", "combined_ann_cl.csv",
                                                            "ann_with_predictions_cl.csv", "model_perf_cl.zip"))
    assert not list(base.glob("*/*_final.*"))
    compare = read_metrics(base, "06_compare")
    runs = {row["run"]: row for row in compare["table"]}
    assert set(runs) == {"s_a", "s_b", "s_oracle", "s_1a", "s_1b", "s_2a", "s_2b", "s_3a", "s_3b", "s_ceal", "s_prop",
                         "s_2thr"}  # 03 trained the clean-label oracle on the truth
    assert runs["s_b"]["SB-to-oracle gap closed"] in (0, None)  # None: the oracle was not above SB on tiny data
    applied = [r for name, r in runs.items() if name not in ("s_a", "s_b", "s_oracle") and r["status"] == "ok"]
    assert {"s_ceal", "s_prop", "s_2thr"} <= {r["run"] for r in applied}
    assert all(0 <= r["unsures labelled (share)"] <= 1 for r in applied)
    assert all(0 <= r["accuracy CI low"] <= r["accuracy"] <= r["accuracy CI high"] <= 1 for r in runs.values())
    methods = {(row["baseline"], row["method"]) for row in compare["flip_finding"]}
    assert methods == {(b, m) for b in ("s_a", "s_b") for m in ("in_sample", "out_of_fold", "cleanlab", "neighbours")}
    assert compare["verdict"]["best"] in runs and compare["verdict"]["best"] != "s_oracle"
    # the simulated reviewer verified the head of the test-review queue; 07 walks that queue
    assert compare["verdict"]["verified_rows"] == 5 and compare["test_review"]["review_budget"] == 5
    assert (base / "test_review_queue.csv").is_file() and len(pd.read_csv(base / "verified_simulated.csv")) == 5
    dirs = {k: params[k] for k in ("data_dir", "data_dir_n", "data_dir_base")}
    nb = run_notebook("07_review", tmp_path / "review", **dirs, queue="test", verified_path=str(tmp_path / "verified.csv"),
                      per_page=8)
    assert images_shown(nb) >= 2 and not (tmp_path / "verified.csv").exists()  # looking verifies nothing
    gains = {row["ranking"]: row for row in compare["review_gain"]["s_b"]}  # the tiny demo has flips
    assert {"perfect", "likely wrong (out-of-fold)", "label quality (cleanlab)", "entropy"} <= set(gains)
    assert all(0 <= row["found at 5%"] <= row["found at 10%"] <= 1 for row in gains.values())

    execute, executed = runner.execute, []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("an unchanged step was executed again"))
    again, _ = run_pipeline(params, jobs=2)
    assert {r.status for r in again} == {"unchanged"}

    # issue 34: a group_by column the sources lack is refused before anything runs (naming the file), so
    # the next unchanged run has nothing to redo; a step that runs again and writes the same bytes
    # (its metrics deleted here) leaves every step after it skipped
    with pytest.raises(InputError, match="no column 'patient_id'") as refused:
        run_pipeline({**params, "group_by": "patient_id"}, jobs=2)
    assert refused.value.path.endswith("_ann.csv")
    assert {r.status for r in run_pipeline(params, jobs=2)[0]} == {"unchanged"}
    combined = Path(tiny_demo["data_dir"]) / "combined_images.npy"
    written_at = combined.stat().st_mtime_ns
    (base / "metrics" / "01_combine.json").unlink()
    monkeypatch.setattr(runner, "execute", lambda step, *a, **k: executed.append(step.name) or execute(step, *a, **k))
    rerun, _ = run_pipeline(params, jobs=2)
    assert executed == ["01_combine"] and {r.status for r in rerun[1:]} == {"unchanged"}
    assert combined.stat().st_mtime_ns == written_at  # the identical file was kept, not rewritten
    executed.clear()
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("an unchanged step was executed again"))

    monkeypatch.setattr(runner, "execute", lambda step, *a, **k: executed.append(step.name) or execute(step, *a, **k))
    changed = {**params, "per_strategy": {"s_2b": {"relabel_thresh": 0.8}}}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        on_dask, _ = run_pipeline(changed, strategies=["s_2b"], scheduler=cluster.scheduler_address)
    assert [r.step for r in on_dask][-1] == "06_compare"
    assert sorted(executed) == ["05_relabel_and_classify_s_2b", "06_compare"]
    assert {r.step: r.status for r in on_dask if r.step not in executed} == {
        name: "unchanged" for name in ("01_combine", "02_split", "03_baselines_SA_SB", "04_differentiator_s_2b")}
    assert all(r.succeeded for r in on_dask), [(r.step, r.status, r.error) for r in on_dask]
    assert read_metrics(base, "06_compare")["table"][-1]["run"] == "s_2b"  # 06 compared the one strategy asked for

    # issue 15, case 5: an output deleted, or a source's annotations edited in place (same size, same
    # modification time), makes the steps that wrote it (and what follows) run again
    def steps_run(params) -> list[str]:
        ran = []
        monkeypatch.setattr(runner, "execute", lambda step, *a, **k: ran.append(step.name) or StepResult(step.name, "ok"))
        run_pipeline(params, strategies=["s_2b"])
        return ran

    (base / "s_b" / "model_perf.zip").unlink()
    assert steps_run(changed)[:2] == ["03_baselines_SA_SB", "04_differentiator_s_2b"]
    ann = Path(tiny_demo["data_dir"]) / "patient_combined_ann.csv"
    stat, text = ann.stat(), ann.read_text()
    edited = text.replace(",1.0,", ",0.0,", 1) if ",1.0," in text else text.replace(",0.0,", ",1.0,", 1)
    assert edited != text and len(edited) == len(text)
    ann.write_text(edited)
    os.utime(ann, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert steps_run(changed)[0] == "01_combine"




def test_not_applicable_strategy_is_reported_and_the_run_goes_on(tiny_demo, tmp_path):
    """SA gets no non-parasite wrong, so s_1a's differentiator would see one class only."""
    from helpers.core.atomic import OutputSet
    from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme
    from helpers.curation.right_wrong import split_right_wrong
    from helpers.data.combine_split import combine, split_by_class
    from helpers.data.layout import Layout
    from helpers.data.sets import open_image_set

    scheme = LabelScheme.from_dict(DEFAULT_ANN_DICT)
    base = tmp_path / "runs"
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], base, scheme)
    combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    split_by_class(layout.combined, scheme)
    source = open_image_set(layout.combined, scheme)
    preds = source.ann.copy()
    rounded = np.rint(preds["annotation"]).astype(int)
    preds["non-parasite output"] = np.where(rounded == 0, 1.0, 0.0)  # every non-parasite right
    preds["parasite output"] = 1.0 - preds["non-parasite output"]
    preds["unsure output"] = 0.0
    with OutputSet() as out:
        out.csv(preds, layout.predictions("s_a"))
    split_right_wrong(source, preds, scheme, lambda c, w: layout.right_wrong("s_a", c, w))

    dirs = dict(data_dir=str(tiny_demo["data_dir"]), data_dir_n=str(tiny_demo["data_dir_n"]), data_dir_base=str(base))
    tiny = dict(arch="resnet10", width=8, epochs=1, batch_size=64)
    run_notebook("04_differentiator", base / "reports", **dirs, **tiny, strategy="s_1a")
    m04 = read_metrics(base, "04_differentiator_s_1a")
    assert m04["status"] == "not applicable" and "one class" in m04["reason"]
    assert not layout.predictions("s_1a", "diff").exists()
    run_notebook("05_relabel_and_classify", base / "reports", **dirs, **tiny, strategy="s_1a")
    assert read_metrics(base, "05_relabel_and_classify_s_1a")["status"] == "not applicable"
    nb = run_notebook("06_compare", base / "reports", **dirs, strategies=["s_1a"], truth_path="", n_bootstrap=50)
    rows = {r["run"]: r for r in read_metrics(base, "06_compare")["table"]}
    assert rows["s_1a"]["status"] == "not applicable"
    shown = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Best by test accuracy" in shown and "not applicable" in shown
    assert "PosixPath" not in shown  # no stray return values in the report

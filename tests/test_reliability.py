"""Reliability (issue 15): no lost inputs, no stale models, one run at a time, every bad value
refused. One section per numbered case of the issue."""
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_DEMO, write_set

import helpers.run.runner as runner
from helpers.core.atomic import OutputSet
from helpers.core.errors import InputError, ParameterError
from helpers.core.paths import PROJECT_ROOT
from helpers.curation.verdict_rule import verdict
from helpers.data.combine_split import combine
from helpers.data.demo import make_demo
from helpers.data.layout import Layout
from helpers.data.overrides import apply_overrides
from helpers.data.sets import Pair, open_image_set
from helpers.data.truth import read_truth
from helpers.model.training import fit
from helpers.run.config import check_parameters
from helpers.run.lock import RunLocked, run_lock
from helpers.run.parameter_files import load_parameters
from helpers.run.parameters import notebook_defaults, train_config
from helpers.run.runner import notebook_error, plan, run_pipeline

# ---------------------------------------------------------------- 6. NaN and inf; YAML's usual number forms


@pytest.mark.parametrize("notebook,name", [
    ("01_combine", "test_frac"), ("05_relabel_and_classify", "relabel_thresh"),
    ("03_baselines_SA_SB", "precision_target"), ("03_baselines_SA_SB", "recall_target"),
    ("07_review", "rbc_per_ul"),
])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_by_name(notebook, name, value):
    with pytest.raises(ParameterError, match=f"'{name}'.*finite"):
        check_parameters(notebook, {**notebook_defaults(notebook), name: value})


@pytest.mark.parametrize("name", ["focal_gamma", "lr", "label_smoothing", "weight_decay", "val_frac"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_training_numbers_are_refused_by_name(name, value):
    with pytest.raises(ParameterError, match=f"'{name}'"):
        train_config(**{name: value})


def test_yaml_numbers_as_people_write_them(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("lr: 1e-3\nrbc_per_ul: 5E6\nweight_decay: 5.0e-2\nper_strategy: {s_1a: {relabel_thresh: 8e-1}}\n")
    params = load_parameters(path, ["focal_gamma=2e0"])
    assert (params["lr"], params["rbc_per_ul"], params["weight_decay"], params["focal_gamma"]) == (1e-3, 5e6, 0.05, 2.0)
    del params["rbc_per_ul"]  # 07's; the runner does not run 07
    steps = {s.name: s.parameters for s in plan({**params, "strategies": ["s_1a"]}).steps}
    assert steps["03_baselines_SA_SB"]["lr"] == 1e-3 and steps["05_relabel_and_classify_s_1a"]["relabel_thresh"] == 0.8
    path.write_text("relabel_thresh: .nan\n")
    with pytest.raises(ParameterError, match="'relabel_thresh'.*finite"):
        plan(load_parameters(path))


# ---------------------------------------------------------------- 3. one run at a time per folder

def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the run lock of `folder`, as a running pipeline would."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom helpers.run.lock import run_lock\n"
            "with run_lock([Path(sys.argv[1])]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                              cwd=PROJECT_ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_on_a_folder_in_use_is_refused_naming_it_and_the_other_process(tmp_path):
    runs = tmp_path / "runs"
    params = {"data_dir": str(tmp_path / "d"), "data_dir_n": str(tmp_path / "n"), "data_dir_base": str(runs)}
    holder = _hold_lock(runs)
    try:
        with pytest.raises(RunLocked, match=rf"{re.escape(str(runs))}: another pipeline run.*pid {holder.pid}"):
            run_pipeline(params)
        assert not (runs / "reports").exists()  # refused before anything ran
    finally:
        holder.kill()  # as a crash would: the lock goes with the process
        holder.wait()
    with run_lock([runs]):  # free again, nothing stuck
        pass


def test_the_data_folder_is_locked_too(tmp_path):
    data = tmp_path / "d"
    holder = _hold_lock(data)
    try:
        with pytest.raises(RunLocked, match=re.escape(str(data))):
            run_pipeline({"data_dir": str(data), "data_dir_n": str(tmp_path / "n"),
                          "data_dir_base": str(tmp_path / "other_runs")})
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- 10. leftovers and unclear errors

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    final = tmp_path / "combined_images.npy"
    host = socket.gethostname()
    stale = tmp_path / f".combined_images.npy.{host}-{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".combined_images.npy.{host}-{os.getppid()}.def456.tmp"  # a running writer's
    other = tmp_path / ".combined_images.npy.otherhost-1.ghi789.tmp"  # another machine's: not ours to judge
    for path in (stale, live, other):
        path.write_bytes(b"x" * 100)
    with OutputSet() as out:
        out.json({"a": 1}, final)
    assert final.is_file() and not stale.exists() and live.exists() and other.exists()
    assert [p.name for p in tmp_path.glob(".combined_images.npy.*.tmp")].__len__() == 2


def test_the_step_error_is_the_notebooks_own_exception(tmp_path):
    notebook = tmp_path / "03.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "fine"}]},
        {"cell_type": "code", "outputs": [{"output_type": "error", "ename": "NotTrainable",
                                           "evalue": "data/x_ann.csv: no rows to train on", "traceback": []}]}]}))
    stderr = "Traceback ...\npapermill.exceptions.PapermillExecutionError: \n---------\n"
    assert notebook_error(notebook, stderr) == "NotTrainable: data/x_ann.csv: no rows to train on"
    assert notebook_error(tmp_path / "missing.ipynb", "boom\nValueError: bad thing\n") == "ValueError: bad thing"


FAILING_NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}},
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1", "outputs": [],
         "execution_count": None, "id": "a"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "id": "b",
         "source": "class NotTrainable(Exception):\n    pass\nraise NotTrainable(f'nothing to train (x={x})')"},
    ]}


@pytest.mark.slow
def test_a_step_leaves_no_temp_files_and_a_kill_keeps_the_last_report(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "fail.ipynb").write_text(json.dumps(FAILING_NOTEBOOK))
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", notebooks)
    reports = tmp_path / "reports"
    before = set(Path(tempfile.gettempdir()).iterdir())
    result = runner.execute(runner.Step("fail_step", "fail", {"x": 7}), reports)
    assert result.status == "failed" and result.error == "NotTrainable: nothing to train (x=7)"
    assert sorted(p.name for p in reports.iterdir()) == ["fail_step.html", "fail_step.ipynb", "fail_step_nocode.html"]
    assert set(Path(tempfile.gettempdir()).iterdir()) - before == set()
    # papermill killed half way: the last finished report stays as it was
    good = (reports / "fail_step.ipynb").read_text()
    monkeypatch.setattr(runner, "_papermill_command", lambda args: [
        sys.executable, "-c", "import os, sys; open(sys.argv[1], 'w').write('{half'); os.kill(os.getpid(), 9)",
        args[1]])
    assert runner.execute(runner.Step("fail_step", "fail", {"x": 8}), reports).status == "failed"
    assert (reports / "fail_step.ipynb").read_text() == good
    assert not (reports / ".fail_step.partial.ipynb").exists()


# ---------------------------------------------------------------- 1. an input is destroyed

@pytest.mark.parametrize("source", ["x/combined_images_parasite.npy", "x/combined_images_parasite_and_non-parasite.npy",
                                    "runs/s_b/combined_images_parasite_wrong.npy"])
def test_a_source_that_a_step_would_overwrite_is_refused_before_anything_runs(tmp_path, source):
    params = {"data_dir": str(tmp_path / "x"), "data_dir_n": str(tmp_path / "n"),
              "data_dir_base": str(tmp_path / "runs"), "sources": [str(tmp_path / source)]}
    with pytest.raises(ParameterError, match=rf"'sources'.*{re.escape(source.split('/')[-1])} (is also an output of "
                                             rf"02_split|lies in .*runs.s_b)"):
        plan(params)
    with pytest.raises(ParameterError, match="01_combine: parameter 'sources'"):  # the notebook on its own
        check_parameters("01_combine", {**notebook_defaults("01_combine"), **params})


def test_an_override_file_named_like_an_output_is_refused(tmp_path):
    params = {"data_dir": str(tmp_path / "x"), "data_dir_n": str(tmp_path / "n"), "data_dir_base": str(tmp_path / "r"),
              "overrides_path": str(tmp_path / "x" / "combined_ann_unsure_as_parasite.csv")}
    with pytest.raises(ParameterError, match="'overrides_path'.*output of 02_split"):
        plan(params)


# ---------------------------------------------------------------- 2. a stale checkpoint is reused

def _tiny_set(folder: Path, test_rows: int) -> Pair:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120).astype(float)
    images = rng.integers(0, 60, (120, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, 3:6, 3:6] = 250
    split = np.where(np.arange(120) < test_rows, "test", "")
    return write_set(folder, "tiny", images, labels, split=split)


def test_resume_continues_only_a_checkpoint_of_the_same_run(tmp_path, scheme, capsys):
    pair = _tiny_set(tmp_path, test_rows=24)
    checkpoint = tmp_path / "checkpoint.pt"
    cfg = train_config(arch="resnet10", width=8, epochs=2, batch_size=32, progress=False)
    first = fit(open_image_set(pair, scheme), scheme, cfg, checkpoint)
    again = fit(open_image_set(pair, scheme), scheme, replace(cfg, resume_from=checkpoint), checkpoint)
    assert again.resumed_from == checkpoint and len(again.history) == 2  # nothing left to train: same run
    torch.testing.assert_close(again.model.state_dict(), first.model.state_dict())
    # the data changed (a larger test share: rows that trained before are now test rows)
    _tiny_set(tmp_path, test_rows=48)
    fresh = fit(open_image_set(pair, scheme), scheme, replace(cfg, resume_from=checkpoint), checkpoint)
    assert fresh.resumed_from is None and "not resuming, training from scratch" in capsys.readouterr().out
    assert (fresh.data.split == "test").sum() == 48
    # a changed parameter too
    assert fit(open_image_set(pair, scheme), scheme, replace(cfg, lr=0.01, resume_from=checkpoint)).resumed_from is None


def test_force_removes_the_checkpoints(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name in ("s_a/checkpoint.pt", "s_1a/checkpoint_cl.pt"):
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_bytes(b"old")
    monkeypatch.setattr(runner, "_run_plan", lambda *args: [])
    run_pipeline({"data_dir": str(tmp_path / "d"), "data_dir_n": str(tmp_path / "n"), "data_dir_base": str(runs)},
                 force=True)
    assert list(runs.rglob("checkpoint*.pt")) == []


# ---------------------------------------------------------------- 4. bad override rows

def _overrides(tmp_path, rows: list[str]) -> Path:
    path = tmp_path / "overrides.csv"
    path.write_text("\n".join(["batch,image_id,field,old,new,time,source_file", *rows]) + "\n")
    return path


def _ann() -> pd.DataFrame:
    return pd.DataFrame({"image_id": ["a:0", "a:1", "a:2"], "annotation": [0.0, 1.0, 2.0],
                         "split": ["test", "train", "train"]})


@pytest.mark.parametrize("row,problem", [
    ("2,a:1,split,test,train,t,", r"line 3: field 'split' is not one of"),
    ("2,a:1,labl,unsure,parasite,t,", r"line 3: field 'labl'"),
    ("2,a:1,image_id,a:1,a:9,t,", r"line 3: field 'image_id'"),
    ("2,a:1,exclude,False,Tr,t,", r"line 3: exclude of a:1 must be true or false, got 'Tr'"),
    ("2,,label,unsure,parasite,t,", r"line 3: empty image_id"),
    ("2,a:1,label,unsure,cat,t,", r"line 3: label 'cat' is not in the scheme"),
    ("2,a:7,label,unsure,parasite,t,", r"line 3: 1 override\(s\) name images not in the combined set"),
])
def test_a_bad_override_row_is_refused_naming_the_file_and_line(tmp_path, scheme, row, problem):
    path = _overrides(tmp_path, ["1,a:0,label,non-parasite,parasite,t,", row])
    with pytest.raises(InputError, match=rf"overrides\.csv: {problem}"):
        apply_overrides(_ann(), path, scheme)


@pytest.mark.parametrize("content,problem", [(b"", "empty"), (b"\x00\xff\xfe garbage \x00", "unreadable|missing columns"),
                                             (b"a,b\n1,2\n", "missing columns")])
def test_an_empty_or_garbage_override_file_is_named(tmp_path, scheme, content, problem):
    path = tmp_path / "overrides.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"overrides\.csv: not a label-override file: .*({problem})"):
        apply_overrides(_ann(), path, scheme)


def test_annotation_rows_set_the_class_and_flags_read_strictly(tmp_path, scheme):
    path = _overrides(tmp_path, ["1,a:2,annotation,unsure,parasite,t,", "2,a:1,exclude,False,TRUE,t,",
                                 "3,a:0,validation,False,0,t,"])
    ann, n = apply_overrides(_ann(), path, scheme)
    assert n == 3 and ann["annotation"].tolist() == [0.0, 1.0, 1.0] and ann["split"].tolist() == ["test", "train", "train"]
    assert ann["exclude"].tolist() == [False, True, False] and ann["validation"].tolist() == [False, False, False]


# ---------------------------------------------------------------- 7. float images with NaN / inf / 0-255

@pytest.mark.parametrize("bad,problem", [(np.nan, "row 37: NaN or infinite"), (np.inf, "row 37: NaN or infinite"),
                                         (254.0, r"row 37: float pixels must lie in \[0, 1\], found 0 to 254")])
def test_float_images_must_be_finite_and_in_0_1(tmp_path, scheme, bad, problem):
    images = np.zeros((60, 2, 5, 5), np.float32)
    images[37, 1, 2, 2] = bad
    good = write_set(tmp_path / "good", "good", np.zeros((10, 2, 5, 5), np.float32), np.zeros(10))
    source = write_set(tmp_path / "src", "src", images, np.r_[np.zeros(30), np.ones(30)])
    out = Pair(tmp_path / "out" / "combined_images.npy", tmp_path / "out" / "combined_ann.csv")
    with pytest.raises(InputError, match=rf"src_images\.npy: {problem}"):
        combine([good, source], out, scheme)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


# ---------------------------------------------------------------- 8. truth of other data; undefined primary metric

def _combined_layout(demo: dict, base: Path, scheme) -> Layout:
    layout = Layout(demo["data_dir"], demo["data_dir_n"], base, scheme)
    combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    return layout


def test_no_truth_unless_asked_and_another_data_sets_truth_is_refused(tiny_demo, tmp_path, scheme):
    assert notebook_defaults("06_compare")["truth_path"] == ""  # no fallback to the demo's truth file
    layout = _combined_layout(tiny_demo, tmp_path / "runs", scheme)
    assert read_truth("", layout) is None
    assert len(read_truth(str(tiny_demo["truth"]), layout)) == 240  # its own truth
    other = make_demo(tmp_path / "other", replace(TINY_DEMO, seed=11))  # same file names, other images
    with pytest.raises(InputError, match=r"other/truth\.csv: describes other images: only \d+% of the labels"):
        read_truth(str(other["truth"]), layout)
    partial = tmp_path / "partial_truth.csv"
    pd.read_csv(tiny_demo["truth"]).iloc[:200].to_csv(partial, index=False)
    with pytest.raises(InputError, match=r"partial_truth\.csv: covers 200 of the 240 images"):
        read_truth(str(partial), layout)
    with pytest.raises(InputError, match=r"nowhere\.csv: truth file not found"):
        read_truth(str(tmp_path / "nowhere.csv"), layout)


def test_no_winner_when_the_primary_metric_is_undefined():
    table = pd.DataFrame({"status": ["ok", "ok"], "ROC AUC": [np.nan, np.nan]}, index=["s_a", "s_b"])
    result = verdict(table, {}, "roc_auc")
    assert result["best"] is None and "undefined for every run" in result["text"]
    table = pd.DataFrame({"status": ["ok", "ok", "ok"], "ROC AUC": [np.nan, 0.7, 0.8]}, index=["s_a", "s_b", "s_1a"])
    result = verdict(table, {}, "roc_auc")
    assert result["best"] == "s_1a" and result["runner-up"]["run"] == "s_b" and "nan" not in result["text"]


# ---------------------------------------------------------------- 9. a dead kernel at width 8

TRAIN_AT_WIDTH_8 = """
import sys
import numpy as np, torch
sys.path.insert(0, 'tests')
from conftest import write_set
from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme
from helpers.data.sets import open_image_set
from helpers.model.training import fit
from helpers.run.parameters import train_config
torch.set_num_threads(2)
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, 99).astype(float)
pair = write_set(__import__('pathlib').Path(sys.argv[1]), 'w8', rng.integers(0, 255, (99, 4, 31, 31)).astype(np.uint8), labels)
scheme = LabelScheme.from_dict(DEFAULT_ANN_DICT)
for arch in ('resnet10', 'resnet18'):  # 69 training rows in batches of 64: the last batch has 5
    fit(open_image_set(pair, scheme), scheme, train_config(arch=arch, width=8, epochs=3, batch_size=64, progress=False))
print('trained')
"""


@pytest.mark.slow
def test_training_at_width_8_with_two_threads_keeps_the_process_alive(tmp_path):
    proc = subprocess.run([sys.executable, "-c", TRAIN_AT_WIDTH_8, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "trained", proc.stderr[-2000:]


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_runner_takes_its_papermill_and_kernel_with_it(tiny_demo, tmp_path):
    base = tmp_path / "runs"
    runner_proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "run", str(PROJECT_ROOT / "parameters" / "smoke.yaml"),
         "-p", f"data_dir={tiny_demo['data_dir']}", "-p", f"data_dir_n={tiny_demo['data_dir_n']}",
         "-p", f"data_dir_base={base}", "-p", "overrides_path="],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reports = str(base / "reports")
    deadline = time.monotonic() + 60
    kernel = f"-f {reports}/.runtime/01_combine/"  # the kernel's connection file lives in the run's own folder
    while not (_processes_mentioning(kernel) and _processes_mentioning(".01_combine.partial.ipynb")):
        assert time.monotonic() < deadline, "the runner never started papermill and a kernel"
        time.sleep(0.2)
    runner_proc.kill()
    runner_proc.wait()
    deadline = time.monotonic() + 10
    while _processes_mentioning(reports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(reports) == []

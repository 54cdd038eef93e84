"""The large evaluation set the curation benchmark scores every run on (issue 24, part 1): new crops
from the same generator, true labels, never read by the pipeline."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_DEMO, write_set

from helpers.core.errors import InputError
from helpers.curation.eval_set import eval_decisions, eval_scores, read_eval_set
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.demo import EVAL_IMAGES, EVAL_TRUTH, make_eval_set
from helpers.run.cli import main
from helpers.run.parameters import train_config

SMALL = ["--n-patient", "300", "--n-neg", "150", "--size", "11", "--seed", "4"]


def _digests(folder):
    return {p.relative_to(folder): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and "eval" not in p.parts}


def test_the_evaluation_set_is_new_crops_and_leaves_the_demo_data_as_they_were(tmp_path):
    assert main(["demo", str(tmp_path / "plain"), *SMALL]) == 0
    assert main(["demo", str(tmp_path / "with"), *SMALL, "--eval-size", "600"]) == 0
    assert _digests(tmp_path / "plain") == _digests(tmp_path / "with")  # the pipeline's data do not change
    truth = pd.read_csv(tmp_path / "with" / "eval" / EVAL_TRUTH)
    images = np.load(tmp_path / "with" / "eval" / EVAL_IMAGES)
    assert len(truth) == len(images) == 600 and images.shape[1:] == (4, 11, 11)
    assert (truth["source"] == "patient").sum() == 400  # the demo's mix of sources: 300 to 150
    assert not truth.loc[truth["source"] == "neg", "unsure"].any() and truth["unsure"].any()
    assert truth["slide"].str.startswith("eval-").all()  # slides of its own
    demo_images = np.load(tmp_path / "with" / "patient" / "patient_combined_images.npy")
    assert not np.array_equal(images[:10], demo_images[:10])


def test_if_missing_adds_the_evaluation_set_to_existing_demo_data_only(tmp_path, capsys):
    folder = tmp_path / "d"
    assert main(["demo", str(folder), *SMALL]) == 0
    before = _digests(folder)
    assert main(["demo", str(folder), *SMALL, "--eval-size", "50", "--if-missing"]) == 0
    assert _digests(folder) == before and len(pd.read_csv(folder / "eval" / EVAL_TRUTH)) == 50
    assert main(["demo", str(tmp_path / "e"), "--eval-size", "1"]) == 2
    assert "--eval-size must be 0 (none) or at least 2" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_the_scores_count_each_run_against_the_truth_and_sb(tmp_path):
    truth_pos = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    sb = truth_pos.copy()
    sb[:20] = False  # 80% right
    fix = truth_pos.copy()
    fix[:10] = False  # 90% right: half of SB's errors fixed
    table = eval_scores({"s_b": sb, "s_fix": fix, "s_oracle": truth_pos}, truth_pos, n_bootstrap=200)
    assert table.loc["s_b", "eval accuracy"] == 0.8 and table.loc["s_fix", "eval accuracy"] == 0.9
    assert table.loc["s_fix", "eval gap closed"] == pytest.approx(0.5)
    assert table.loc["s_fix", "eval gain over SB"] == pytest.approx(0.1)
    assert 0 < table.loc["s_fix", "eval gain CI low"] <= 0.1 <= table.loc["s_fix", "eval gain CI high"]
    assert table.loc["s_b", "eval accuracy CI low"] < 0.8 < table.loc["s_b", "eval accuracy CI high"]


def test_reading_the_set_leaves_out_what_the_annotator_would_call_unsure_and_names_bad_files(tmp_path):
    folder = make_eval_set(tmp_path / "eval", TINY_DEMO, 300)
    images, truth_pos = read_eval_set(folder, "parasite")
    truth = pd.read_csv(folder / EVAL_TRUTH)
    assert len(images) == len(truth_pos) == (~truth["unsure"]).sum() < 300
    assert truth_pos.sum() == ((truth["truth"] == "parasite") & ~truth["unsure"]).sum()
    np.save(folder / EVAL_IMAGES, np.zeros((7, 4, 15, 15), np.uint8))
    with pytest.raises(InputError, match="eval_images.npy: 7 images but 300 rows"):
        read_eval_set(folder, "parasite")
    with pytest.raises(InputError, match="evaluation set not found"):
        read_eval_set(tmp_path / "nowhere", "parasite")


def test_a_run_calls_the_evaluation_crops_as_its_own_predictions_do(tmp_path, scheme):
    """The evaluation set is scored with the model exactly as the pipeline scores a run: the bundle's
    test-time views and temperature, the class with the largest output."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120).astype(float)
    images = rng.integers(0, 100, (120, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, :3, :3] = 250
    pair = write_set(tmp_path / "set", "set", images, labels)
    cfg = train_config(arch="resnet10", width=8, batch_size=32, epochs=2, tta=True, calibrate=True, progress=False)
    run = train_and_save(pair, scheme, TrainRequest(cfg, tmp_path / "p.csv", tmp_path / "model_perf.zip"))
    calls = eval_decisions({"s_b": tmp_path / "model_perf.zip"}, images, "parasite")["s_b"]
    expected = run.predictions["parasite output"].to_numpy() > run.predictions["non-parasite output"].to_numpy()
    assert calls.dtype == bool and (calls == expected).all()

"""The second data set of real images (issue 24, part 6): scikit-learn's handwritten digits as a
rotation-free two-class case with unsures and the demo's noise kinds."""
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAINING
from sklearn.datasets import load_digits

from helpers.core.labels import DEFAULT_ANN_DICT
from helpers.core.paths import PROJECT_ROOT
from helpers.data.digits import SCALE, DigitsSpec, make_digits
from helpers.run.cli import main
from helpers.run.parameter_files import load_parameters
from helpers.run.runner import run_pipeline


def _read(folder):
    truth = pd.read_csv(folder / "truth.csv")
    patient = pd.read_csv(folder / "patient" / "patient_combined_ann.csv")
    neg = pd.read_csv(folder / "neg" / "neg_combined_ann.csv")
    return truth, patient, neg


@pytest.mark.parametrize("noise", ["uniform", "systematic"])
def test_odd_digits_are_parasites_with_the_noise_asked_for(tmp_path, noise):
    make_digits(tmp_path, DigitsSpec(flip_frac=0.2, noise=noise, seed=1))
    truth, patient, neg = _read(tmp_path)
    assert len(patient) + len(neg) == 1797 and (neg["digit"] % 2 == 0).all() and (neg["annotation"] == 0).all()
    rows = truth.iloc[:len(patient)].reset_index(drop=True)
    assert ((patient["digit"] % 2 == 1) == (rows["truth"] == "parasite")).all()
    certain = patient["annotation"] != DEFAULT_ANN_DICT["unsure"]
    assert rows.loc[certain, "label_flipped"].mean() == pytest.approx(0.2, abs=0.03)
    assert patient["slide"].nunique() > 5 and 0 < (~certain).sum()


def test_systematic_flips_fall_on_ambiguous_digits_and_a_turned_6_is_ambiguous(tmp_path):
    hardness = {}
    for noise in ("uniform", "systematic"):
        make_digits(tmp_path / noise, DigitsSpec(flip_frac=0.1, noise=noise))
        truth, patient, _ = _read(tmp_path / noise)
        rows = truth.iloc[:len(patient)]
        hardness[noise] = rows.loc[rows["label_flipped"].to_numpy(), "hardness"].mean()
    assert hardness["systematic"] > hardness["uniform"] + 0.15
    by_digit = rows["hardness"].groupby(patient["digit"].to_numpy()).mean()
    assert by_digit[[6, 9]].mean() > 2 * by_digit[[0, 1, 4, 7]].mean()


def test_the_images_are_the_digits_turned_and_mirrored_at_random(tmp_path):
    make_digits(tmp_path, DigitsSpec(seed=2))
    images = np.load(tmp_path / "patient" / "patient_combined_images.npy")
    assert images.dtype == np.uint8 and images.shape[1:] == (1, 8 * SCALE, 8 * SCALE)
    upright = np.rint(load_digits().images * (255 / 16)).astype(np.uint8).repeat(SCALE, 1).repeat(SCALE, 2)
    as_given = (images[:, 0, None] == upright[None]).all(axis=(2, 3)).any(axis=1)
    assert 0.05 < as_given.mean() < 0.3  # about one in eight keeps its orientation
    again = tmp_path / "again"
    make_digits(again, DigitsSpec(seed=2))
    assert np.array_equal(images, np.load(again / "patient" / "patient_combined_images.npy"))


def test_the_cli_writes_digits_and_refuses_an_evaluation_set(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d"), "--dataset", "digits", "--flip-frac", "0.2"]) == 0
    assert len(pd.read_csv(tmp_path / "d" / "truth.csv")) == 1797
    assert main(["demo", str(tmp_path / "e"), "--dataset", "digits", "--eval-size", "100"]) == 2
    assert "no more images to evaluate on" in capsys.readouterr().err and not (tmp_path / "e").exists()


@pytest.mark.slow
def test_the_pipeline_runs_on_the_digits(tmp_path):
    paths = make_digits(tmp_path / "digits", DigitsSpec(flip_frac=0.2))
    base = tmp_path / "runs"
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), **TINY_TRAINING,
              "data_dir": str(paths["data_dir"]), "data_dir_n": str(paths["data_dir_n"]), "data_dir_base": str(base),
              "truth_path": str(paths["truth"]), "which": "s_b", "wrong_from": "out_of_fold", "folds": 2,
              "group_by": "slide"}
    results, _ = run_pipeline(params, strategies=["s_fix"], jobs=2)
    assert all(r.succeeded for r in results), [(r.step, r.status, r.error) for r in results]
    compare = pd.read_json(base / "metrics" / "06_compare.json", typ="series")
    table = pd.DataFrame(compare["table"]).set_index("run")
    assert table.loc[["s_b", "s_oracle", "s_fix"], "accuracy vs truth"].notna().all()  # scored against the truth

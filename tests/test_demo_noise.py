"""Demo data with the noise asked for (issue 17, part 1): --flip-frac and --noise uniform|systematic."""
import numpy as np
import pandas as pd
import pytest

from helpers.data.demo import DemoSpec, make_demo, systematic_flip_prob
from helpers.run.cli import main


def _flips(folder, **spec) -> pd.DataFrame:
    make_demo(folder, DemoSpec(n_patient=3000, n_neg=200, size=15, seed=1, **spec))
    truth = pd.read_csv(folder / "truth.csv")
    ann = pd.read_csv(folder / "patient" / "patient_combined_ann.csv")
    patient = truth[truth["image_id"].str.startswith("patient")].reset_index(drop=True)
    return patient.assign(annotation=ann["annotation"], certain=ann["annotation"] != 2)


@pytest.mark.parametrize("noise", ["uniform", "systematic"])
def test_the_flip_fraction_asked_for_is_the_share_of_certain_labels_flipped(tmp_path, noise):
    rows = _flips(tmp_path / noise, flip_frac=0.2, noise=noise)
    certain = rows[rows["certain"]]
    assert certain["label_flipped"].mean() == pytest.approx(0.2, abs=0.025)
    assert (rows["noise"] == noise).all() and not rows.loc[~rows["certain"], "label_flipped"].any()
    flipped = certain[certain["label_flipped"]]
    given_parasite = flipped["annotation"] == 1
    assert (given_parasite == (flipped["truth"] == "non-parasite")).all()  # a flip is the other class


def test_systematic_noise_flips_hard_images_and_never_easy_ones(tmp_path):
    uniform = _flips(tmp_path / "u", flip_frac=0.1, noise="uniform")
    systematic = _flips(tmp_path / "s", flip_frac=0.1, noise="systematic")
    hard = lambda rows: rows.loc[rows["certain"] & rows["label_flipped"], "hardness"].mean()  # noqa: E731
    assert hard(systematic) > hard(uniform) + 0.15
    easy = systematic["certain"] & (systematic["hardness"] == 0)  # non-parasites without a distractor
    assert easy.sum() > 100 and not systematic.loc[easy, "label_flipped"].any()


def test_systematic_probabilities_meet_the_mean_even_when_capped():
    hardness = np.r_[np.zeros(50), np.linspace(0.01, 1, 50)]
    prob = systematic_flip_prob(hardness, np.ones(100, bool), 0.4)
    assert prob.mean() == pytest.approx(0.4, rel=0.01) and prob.max() <= 1 and (prob[:50] == 0).all()


def test_default_demo_is_peoples_errors_at_10_percent(tmp_path):
    default = _flips(tmp_path / "d")
    explicit = _flips(tmp_path / "e", flip_frac=0.10, noise="systematic")
    assert default.equals(explicit)


def test_slides_have_their_own_stain_and_parasitaemia_in_every_source(tmp_path):
    make_demo(tmp_path, DemoSpec(n_patient=1200, n_neg=600, size=15, seed=2))
    for source in ("patient", "neg"):
        ann = pd.read_csv(tmp_path / source / f"{source}_combined_ann.csv")
        images = np.load(tmp_path / source / f"{source}_combined_images.npy")
        assert ann["slide"].str.startswith(f"{source}-").all() and ann["slide"].nunique() >= 2
        brightness = pd.Series(images[:, 0].mean(axis=(1, 2))).groupby(ann["slide"].to_numpy()).mean()
        assert brightness.max() - brightness.min() > 2  # one slide is visibly brighter than another
    truth = pd.read_csv(tmp_path / "truth.csv").iloc[:1200]
    patient = pd.read_csv(tmp_path / "patient" / "patient_combined_ann.csv")
    share = (truth["truth"] == "parasite").groupby(patient["slide"].to_numpy()).mean()
    assert share.max() - share.min() > 0.1  # patients differ in parasitaemia


def test_cli_takes_flip_frac_and_noise_and_refuses_bad_values(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "x"), "--n-patient", "200", "--n-neg", "20", "--size", "9",
                 "--flip-frac", "0.2", "--noise", "systematic"]) == 0
    assert (pd.read_csv(tmp_path / "x" / "truth.csv")["noise"] == "systematic").all()
    assert main(["demo", str(tmp_path / "y"), "--flip-frac", "0.7"]) == 2
    assert "flip_frac must be in [0, 0.5]" in capsys.readouterr().err and not (tmp_path / "y").exists()
    with pytest.raises(SystemExit):
        main(["demo", str(tmp_path / "z"), "--noise", "gaussian"])


def test_a_large_source_is_drawn_in_chunks_with_its_own_slides(tmp_path, monkeypatch):
    import helpers.data.demo as demo

    monkeypatch.setattr(demo, "CHUNK_CROPS", 400)
    spec = DemoSpec(n_patient=1000, n_neg=300, size=15, slide_size=100, flip_frac=0.2, seed=3)
    make_demo(tmp_path / "chunked", spec)
    images = np.load(tmp_path / "chunked" / "patient" / "patient_combined_images.npy")
    ann = pd.read_csv(tmp_path / "chunked" / "patient" / "patient_combined_ann.csv")
    truth = pd.read_csv(tmp_path / "chunked" / "truth.csv")
    assert images.shape == (1000, 4, 15, 15) and len(ann) == 1000 and len(truth) == 1300
    chunk_of_slide = ann["slide"].str.extract(r"patient-c(\d+)-")[0]
    assert chunk_of_slide.notna().all() and sorted(chunk_of_slide.unique()) == ["000", "001", "002"]
    assert (np.diff(chunk_of_slide.astype(int)) >= 0).all()  # chunks follow each other
    assert len(set(images[:334].reshape(334, -1).sum(1)) & set(images[334:668].reshape(334, -1).sum(1))) < 20  # new draws
    certain = truth["image_id"].str.startswith("patient") & (ann["annotation"].reindex(range(1300)) != 2)
    assert truth.loc[certain, "label_flipped"].mean() == pytest.approx(0.2, abs=0.04)
    again = tmp_path / "again"
    make_demo(again, spec)
    assert (again / "patient" / "patient_combined_images.npy").read_bytes() == \
        (tmp_path / "chunked" / "patient" / "patient_combined_images.npy").read_bytes()  # still reproducible
    neg = pd.read_csv(tmp_path / "chunked" / "neg" / "neg_combined_ann.csv")
    assert not neg["slide"].str.contains("-c0").any()  # 300 crops: one draw, as before

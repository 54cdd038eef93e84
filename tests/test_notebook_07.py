import pytest

from notebook_runs import images_shown, run_notebook

TINY = dict(arch="resnet10", width=8, epochs=1, batch_size=64)


@pytest.fixture
def baseline_demo(tiny_demo, tmp_path):
    base = tmp_path / "runs"
    dirs = dict(data_dir=str(tiny_demo["data_dir"]), data_dir_n=str(tiny_demo["data_dir_n"]), data_dir_base=str(base))
    run_notebook("01_combine", base / "reports", **dirs, overrides_path=str(tmp_path / "overrides.csv"))
    run_notebook("02_split", base / "reports", **dirs)
    run_notebook("03_baselines_SA_SB", base / "reports", **dirs, **TINY, which="s_b")
    return dirs, base, tmp_path / "overrides.csv"


def test_07_renders_static_views_headless(baseline_demo):
    dirs, base, overrides = baseline_demo
    nb = run_notebook("07_review", base / "reports", **dirs, overrides_path=str(overrides), per_page=8)
    assert images_shown(nb) >= 2  # the likely-wrong grid and the embedding
    assert (base / "s_b" / "ann_with_predictions_features.npy").is_file()  # features cached beside the predictions
    assert not overrides.exists()  # looking changes nothing

import pytest
from notebook_runs import images_shown, run_notebook

pytestmark = pytest.mark.slow


def test_07_renders_static_views_headless(tiny_pipeline, tmp_path):
    overrides = tmp_path / "overrides.csv"
    nb = run_notebook("07_review", tmp_path / "reports", **tiny_pipeline.dirs, overrides_path=str(overrides), per_page=8)
    assert images_shown(nb) >= 2  # the likely-wrong grid and the embedding
    assert (tiny_pipeline.base / "s_b" / "ann_with_predictions_features.npy").is_file()  # cached beside the predictions
    assert not overrides.exists()  # looking changes nothing

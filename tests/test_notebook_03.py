import zipfile

import pandas as pd
import papermill as pm
import pytest
from conftest import TINY_TRAINING
from notebook_runs import images_shown, progress_bars, read_metrics, run_notebook

pytestmark = pytest.mark.slow


def test_03_trains_both_baselines_and_writes_the_contract(tiny_pipeline):
    base = tiny_pipeline.base
    assert images_shown(tiny_pipeline.notebooks["03_baselines_SA_SB"]) >= 8  # loss, confusion, histogram, mistakes x 2
    epoch_lines = [o["text"] for c in tiny_pipeline.notebooks["03_baselines_SA_SB"].cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and "val loss" in o.get("text", "")]
    assert epoch_lines and not progress_bars(tiny_pipeline.notebooks["03_baselines_SA_SB"])  # a line per epoch, no bars
    for run, classes in (("s_a", 3), ("s_b", 2)):
        preds = pd.read_csv(base / run / "ann_with_predictions.csv")
        assert sum(c.endswith(" output") for c in preds.columns) == classes
        assert {"image_id", "split"} <= set(preds.columns)
        with zipfile.ZipFile(base / run / "model_perf.zip") as zf:
            assert {"model.pt", "model_spec.json", "params.json", "loss_history.csv", "metrics.json",
                    "loss_curve.png", "confusion_matrix.png"} <= set(zf.namelist())
            assert len(pd.read_csv(zf.open("loss_history.csv"))) == TINY_TRAINING["epochs"]
        for cls in ("parasite", "non-parasite"):
            for which in ("wrong", "right"):
                assert (base / run / f"combined_images_{cls}_{which}.npy").is_file()
                assert (base / run / f"combined_ann_{cls}_{which}.csv").is_file()
    metrics = read_metrics(base, "03_baselines_SA_SB")
    assert set(metrics["runs"]) == {"s_a", "s_b"}
    assert metrics["runs"]["s_a"]["test_accuracy"] is not None


def test_03_rejects_an_unknown_arch_before_training(tiny_pipeline, tmp_path):
    dirs = {**tiny_pipeline.dirs, "data_dir_base": str(tmp_path / "runs")}
    with pytest.raises(pm.PapermillExecutionError, match="parameter 'arch'"):
        run_notebook("03_baselines_SA_SB", tmp_path / "reports", **dirs, **{**TINY_TRAINING, "arch": "vgg"})
    assert not (tmp_path / "runs" / "s_a").exists()

import zipfile

import pandas as pd
import papermill as pm
import pytest

from notebook_runs import images_shown, read_metrics, run_notebook

TINY_TRAINING = dict(arch="resnet10", width=8, epochs=2, batch_size=64)


@pytest.fixture
def split_demo(tiny_demo, tmp_path):
    base = tmp_path / "runs"
    dirs = dict(data_dir=str(tiny_demo["data_dir"]), data_dir_n=str(tiny_demo["data_dir_n"]), data_dir_base=str(base))
    run_notebook("01_combine", base / "reports", **dirs)
    run_notebook("02_split", base / "reports", **dirs)
    return dirs, base


def test_03_trains_both_baselines_and_writes_the_contract(split_demo):
    dirs, base = split_demo
    nb = run_notebook("03_baselines_SA_SB", base / "reports", **dirs, **TINY_TRAINING)
    assert images_shown(nb) >= 8  # loss curves, confusion matrices, histograms, mistakes for two runs
    for run, classes in (("s_a", 3), ("s_b", 2)):
        preds = pd.read_csv(base / run / "ann_with_predictions.csv")
        assert sum(c.endswith(" output") for c in preds.columns) == classes
        assert {"image_id", "split"} <= set(preds.columns)
        with zipfile.ZipFile(base / run / "model_perf.zip") as zf:
            assert {"model.pt", "model_spec.json", "params.json", "loss_history.csv", "metrics.json",
                    "loss_curve.png", "confusion_matrix.png"} <= set(zf.namelist())
            assert len(pd.read_csv(zf.open("loss_history.csv"))) == 2
        for cls in ("parasite", "non-parasite"):
            for which in ("wrong", "right"):
                assert (base / run / f"combined_images_{cls}_{which}.npy").is_file()
                assert (base / run / f"combined_ann_{cls}_{which}.csv").is_file()
    metrics = read_metrics(base, "03_baselines_SA_SB")
    assert set(metrics["runs"]) == {"s_a", "s_b"}
    assert metrics["runs"]["s_a"]["test_accuracy"] is not None


def test_03_rejects_an_unknown_arch_before_training(split_demo):
    dirs, base = split_demo
    with pytest.raises(pm.PapermillExecutionError, match="parameter 'arch'"):
        run_notebook("03_baselines_SA_SB", base / "reports", **dirs, **{**TINY_TRAINING, "arch": "vgg"})
    assert not (base / "s_a").exists()

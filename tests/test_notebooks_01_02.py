import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
from conftest import snapshot
from notebook_runs import NOTEBOOKS, images_shown, read_metrics, run_notebook

from helpers.data.demo import DemoSpec, make_demo


@pytest.mark.slow
def test_01_and_02_run_on_demo_data(tiny_pipeline):
    base, data_dir = tiny_pipeline.base, tiny_pipeline.demo["data_dir"]
    assert images_shown(tiny_pipeline.notebooks["01_combine"]) >= 2  # bar chart and example grid inline
    combined = pd.read_csv(data_dir / "combined_ann.csv")
    assert len(combined) == 240 and {"image_id", "source", "split", "fov"} <= set(combined.columns)
    assert read_metrics(base, "01_combine")["rows"] == 240

    assert images_shown(tiny_pipeline.notebooks["02_split"]) >= 2
    certain = pd.read_csv(data_dir / "combined_ann_parasite_and_non-parasite.csv")
    assert (certain["split"] == "test").sum() == (combined["split"] == "test").sum() > 0
    assert {s["set"] for s in read_metrics(base, "02_split")["sets"]} >= {"parasite", "unsure_as_unlabeled"}


@pytest.mark.slow
def test_notebooks_work_for_other_shapes_and_class_names(tmp_path):
    paths = make_demo(tmp_path / "demo", DemoSpec(n_patient=80, n_neg=40, channels=2, size=9, seed=5))
    # rename the classes: the scheme gives names to values, files follow the names
    ann_dict = {"healthy": 0, "infected": 1, "maybe": 2}
    base = tmp_path / "runs"
    dirs = dict(data_dir=str(paths["data_dir"]), data_dir_n=str(paths["data_dir_n"]), data_dir_base=str(base))
    run_notebook("01_combine", base / "reports", **dirs, ann_dict=ann_dict, test_frac=0.0)
    run_notebook("02_split", base / "reports", **dirs, ann_dict=ann_dict)
    images = np.load(paths["data_dir"] / "combined_images_infected_and_healthy.npy")
    assert images.shape[1:] == (2, 9, 9)
    maybe_as = pd.read_csv(paths["data_dir"] / "combined_ann_maybe_as_infected.csv")
    assert set(maybe_as["annotation"]) == {0.8}


@pytest.mark.slow
def test_unknown_parameter_stops_the_notebook(tiny_demo, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter"):
        run_notebook("01_combine", tmp_path / "reports", data_dir=str(tiny_demo["data_dir"]),
                     data_dir_n=str(tiny_demo["data_dir_n"]), test_farc=0.1)


@pytest.mark.slow
def test_bad_input_stops_the_notebook_before_writing(tiny_demo, tmp_path):
    ann = tiny_demo["data_dir_n"] / "neg_combined_ann.csv"
    pd.read_csv(ann).iloc[:-3].to_csv(ann, index=False)
    before = snapshot(tiny_demo["data_dir"].parent)
    with pytest.raises(pm.PapermillExecutionError, match="neg_combined_ann.csv: has 77 rows but its images have 80"):
        run_notebook("01_combine", tmp_path / "reports", data_dir=str(tiny_demo["data_dir"]),
                     data_dir_n=str(tiny_demo["data_dir_n"]), data_dir_base=str(tmp_path / "runs"))
    assert snapshot(tiny_demo["data_dir"].parent) == before


def test_committed_notebooks_have_no_outputs():

    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, path

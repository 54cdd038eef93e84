import ast
import dataclasses
import shutil

import nbformat
import pytest
import yaml

from helpers import ParameterError, check_parameters
from helpers.core.paths import PROJECT_ROOT
from helpers.run.cli import main
from helpers.run.generated import TABLE_END, TABLE_START, sync_generated
from helpers.run.parameter_files import load_parameters
from helpers.run.parameters import NOTEBOOK_PARAMETERS, PARAMETERS, notebook_defaults, train_config
from helpers.run.runner import plan


def parameters_cell_values(path):
    """The literals assigned in a notebook's cell tagged `parameters`, as papermill would see them."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_PARAMETERS))
def test_notebook_parameters_cell_holds_the_table_defaults_and_validates(notebook):
    values = parameters_cell_values(PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb")
    assert values == notebook_defaults(notebook)
    assert tuple(values) == NOTEBOOK_PARAMETERS[notebook]
    cfg = check_parameters(notebook, values)
    assert cfg.layout.data_dir.is_absolute()


def test_every_generated_place_matches_the_table():
    assert sync_generated() == []
    assert main(["parameters", "--check"]) == 0


def test_changing_one_default_changes_every_place_that_shows_it(tmp_path, monkeypatch, capsys):
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks")
    (root / "parameters").mkdir()
    shutil.copy(PROJECT_ROOT / "parameters" / "default.yaml", root / "parameters" / "default.yaml")
    (root / "docs").mkdir()
    shutil.copy(PROJECT_ROOT / "docs" / "parameters.md", root / "docs" / "parameters.md")
    monkeypatch.setitem(PARAMETERS, "epochs", dataclasses.replace(PARAMETERS["epochs"], default=41))

    notebooks = {root / "notebooks" / f"{nb}.ipynb" for nb in NOTEBOOK_PARAMETERS if "epochs" in NOTEBOOK_PARAMETERS[nb]}
    assert set(sync_generated(root)) == notebooks | {root / "parameters" / "default.yaml", root / "docs" / "parameters.md"}
    assert notebook_defaults("03_baselines_SA_SB")["epochs"] == 41  # the runner's defaults follow at once
    assert train_config().epochs == 41

    sync_generated(root, write=True)
    assert sync_generated(root) == []
    for path in notebooks:
        assert parameters_cell_values(path)["epochs"] == 41
    assert yaml.safe_load((root / "parameters" / "default.yaml").read_text())["epochs"] == 41
    readme = (root / "docs" / "parameters.md").read_text()
    table = readme[readme.index(TABLE_START):readme.index(TABLE_END)]
    assert "| `epochs` | `41` |" in table


def test_default_yaml_reproduces_every_notebook_default():
    steps = plan(load_parameters(PROJECT_ROOT / "parameters" / "default.yaml")).steps
    for step in steps:
        expected = notebook_defaults(step.notebook)
        if "strategy" in expected:
            expected["strategy"] = step.parameters["strategy"]
        assert step.parameters == expected, step.name


def test_config_is_typed_and_has_no_untyped_lookups():
    cfg = check_parameters("03_baselines_SA_SB", notebook_defaults("03_baselines_SA_SB"))
    assert cfg.epochs == 40 and cfg.n_examples == 16 and cfg.resume is False
    assert set(cfg.values) == set(NOTEBOOK_PARAMETERS["03_baselines_SA_SB"])
    assert cfg.train_config().resume_from is None  # `resume` is a flag; the checkpoint path is derived
    with pytest.raises(AttributeError):
        cfg.epochz  # noqa: B018


def test_unknown_parameter_is_named():
    values = {**notebook_defaults("01_combine"), "tset_frac": 0.3}
    with pytest.raises(ParameterError, match="'tset_frac': unknown parameter"):
        check_parameters("01_combine", values)


@pytest.mark.parametrize("name,value,match", [
    ("test_frac", 1.0, r"\[0.0, 1.0\)"), ("test_frac", "0.2", "number"), ("seed", 1.5, "integer"),
    ("sources", "a.npy", "list"), ("data_dir", "", "non-empty"), ("ann_dict", {"a": 0}, "positive class"),
])
def test_malformed_parameter_is_named(name, value, match):
    values = {**notebook_defaults("01_combine"), name: value}
    with pytest.raises(ParameterError, match=f"'{name}'.*{match}"):
        check_parameters("01_combine", values)


def test_missing_parameter_is_named():
    values = notebook_defaults("02_split")
    del values["seed"]
    with pytest.raises(ParameterError, match="'seed': missing"):
        check_parameters("02_split", values)

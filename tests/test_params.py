import pytest

from helpers import ParameterError, check_parameters
from helpers.params import NOTEBOOK_PARAMETERS
from helpers.runner import notebook_defaults


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_PARAMETERS))
def test_notebook_parameters_cell_matches_the_table_and_validates(notebook):
    defaults = notebook_defaults(notebook)
    assert tuple(defaults) == NOTEBOOK_PARAMETERS[notebook]
    cfg = check_parameters(notebook, defaults)
    assert cfg.layout.data_dir.is_absolute()


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

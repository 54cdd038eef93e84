import pytest

from helpers.__main__ import main
from helpers.errors import ParameterError
from helpers.runner import load_parameters, plan


def _yaml(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_rejected_before_anything_runs(tmp_path):
    params = load_parameters(_yaml(tmp_path, "data_dir: x\nepochz: 3\n"))
    with pytest.raises(ParameterError, match="'epochz': unknown parameter"):
        plan(params)


def test_malformed_value_is_rejected_with_its_name(tmp_path):
    params = load_parameters(_yaml(tmp_path, "test_frac: 2\n"))
    with pytest.raises(ParameterError, match="01_combine: parameter 'test_frac'"):
        plan(params)


def test_overrides_are_read_as_yaml(tmp_path):
    params = load_parameters(_yaml(tmp_path, "seed: 1\n"), ["seed=4", "sources=[a.npy]"])
    assert params == {"seed": 4, "sources": ["a.npy"]}


def test_cli_runs_demo_and_pipeline(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d"), "--n-patient", "60", "--n-neg", "30", "--size", "9"]) == 0
    params = _yaml(tmp_path, f"data_dir: {tmp_path}/d/patient\ndata_dir_n: {tmp_path}/d/neg\n"
                             f"data_dir_base: {tmp_path}/runs\n")
    assert main(["run", str(params)]) == 0
    out = capsys.readouterr().out
    assert "02_split" in out and "reports:" in out
    assert (tmp_path / "runs" / "reports" / "02_split.ipynb").is_file()
    assert main(["run", str(_yaml(tmp_path, "sedd: 1\n"))]) == 2

"""The docs a newcomer reads: a short README, benchmark pages that match the results they come from."""
import importlib.util
import re

from helpers.core.paths import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"


def _write_docs():
    spec = importlib.util.spec_from_file_location("write_docs", BENCHMARKS / "write_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_reads_in_five_minutes_and_shows_the_two_commands():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    for link in re.findall(r"\]\(([^)#]+)\)", readme):  # every page it links exists
        assert (PROJECT_ROOT / link).is_file(), link


def test_the_benchmark_pages_are_what_the_results_and_scripts_give():
    stale = _write_docs().stale()
    assert not stale, f"stale (run make docs): {[str(p.relative_to(PROJECT_ROOT)) for p in stale]}"


def test_the_benchmarks_readme_covers_every_script():
    readme = (BENCHMARKS / "README.md").read_text()
    scripts = [p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")]
    assert scripts and all(f"## `{name}`" in readme for name in scripts)


def test_a_changed_result_makes_the_page_stale(tmp_path, monkeypatch):
    docs = _write_docs()
    results = tmp_path / "results"
    results.mkdir()
    for path in docs.RESULTS.glob("*.jsonl"):
        (results / path.name).write_text(path.read_text())
    monkeypatch.setattr(docs, "RESULTS", results)
    assert not docs.stale()
    line = (results / "recommended_curation.jsonl").read_text().splitlines()[0].replace('"seed": 0', '"seed": 7')
    (results / "recommended_curation.jsonl").write_text(line + "\n")
    assert docs.stale() == [docs.DOC]

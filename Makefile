# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-all test test-fast parameters docs clean-demo

install: $(STAMP)

# Re-installs only when the dependency list changes; the kernel "python3" runs this venv.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (unsure-curation)" >/dev/null
	touch $(STAMP)

demo: install
	$(PY) -m helpers demo data/demo --if-missing
	$(PY) -m helpers run parameters/demo.yaml

# The demo with every strategy of the table, not only demo.yaml's.
demo-all: install
	$(PY) -m helpers demo data/demo --if-missing
	$(PY) -m helpers run parameters/demo.yaml --strategies all

test: install
	$(PY) -m pytest -q

# The unit tests only (no notebooks, pipeline or browser): under a minute.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Rewrite the notebooks' parameters cells, parameters/default.yaml and docs/parameters.md's table
# from the parameter table in helpers/run/parameters.py.
parameters: install
	$(PY) -m helpers parameters

# Regenerate docs/benchmarks.md and benchmarks/README.md from benchmarks/results/ and the scripts
# (a test fails when they are stale).
docs: install
	$(PY) benchmarks/write_docs.py

clean-demo:
	rm -rf data/demo

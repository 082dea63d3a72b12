# The README's commands. Each target creates or refreshes the project's own virtualenv first.
# TORCH pins the PyTorch wheel (passed to pip as separate arguments). Another build: make test TORCH="torch==2.13.0 --index-url <index>"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,nifti,dicom,dicom-compressed,dicom-htj2k,dicom-seg,demo,docs,tensorboard,onnx,monai,slurm,ray
PYTEST_ARGS ?=
# segmentation_models_pytorch needs timm and torchvision, and PyPI's torchvision does not import
# beside the CPU torch 2.13 wheel; its backbone is tested in a virtualenv of its own with a matching pair.
SMP_VENV ?= .venv-smp
SMP_TORCH ?= torch==2.14.1 torchvision==0.29.1
# The oldest releases the project claims to support (requires-python and the lower bounds of
# pyproject.toml), in a virtualenv of their own: requirements/oldest.txt pins the rest.
PYTHON_OLDEST ?= python3.10
OLDEST_VENV ?= .venv-oldest
TORCH_OLDEST ?= torch==2.3.1
# The tests test-oldest selects (pytest -m).
OLDEST_MARKERS ?= not slow
BENCH_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

.PHONY: venv test test-fast test-smp test-oldest lint docs demo demo-quick bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-smp:
	test -x $(SMP_VENV)/bin/python || $(PYTHON) -m venv $(SMP_VENV)
	$(SMP_VENV)/bin/python -m pip install --quiet $(SMP_TORCH) -e ".[dev,nifti,demo,smp]"
	$(SMP_VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) \
		tests/models/test_models_external.py tests/models/test_models_registered_backbones.py
	cd "$$(mktemp -d)" && $(CURDIR)/$(SMP_VENV)/bin/python $(CURDIR)/examples/gallery/plot_smp_backbone.py

$(OLDEST_VENV)/.stamp-install: requirements/oldest.txt pyproject.toml Makefile
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON_OLDEST) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet $(TORCH_OLDEST) -r requirements/oldest.txt
	$(OLDEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-oldest: $(OLDEST_VENV)/.stamp-install
	$(OLDEST_VENV)/bin/python -m pytest -m "$(OLDEST_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

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
	rm -rf $(VENV) $(SMP_VENV) $(OLDEST_VENV) docs/_build docs/auto_examples demo-report demo-report-quick .pytest_cache .mypy_cache .ruff_cache

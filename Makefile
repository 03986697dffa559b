# cnnlab: the two quick-start commands are `make run` and `make test`; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The shared Kaggle photos when they are beside this checkout; override with DATA=... or CNNLAB_DATA.
DATA ?= $(or $(CNNLAB_DATA),$(wildcard ../shared/datasets/dogs-vs-cats/train))
# QUICK=1 runs the few-minute version of the reproduction (fewer photos and epochs).
QUICK ?=
OUT ?= runs/reproduce$(if $(QUICK),-quick)
PYTEST_ARGS ?=

VENV_TF := .venv-tf

.PHONY: setup setup-tensorflow run test test-slow test-tensorflow lint bench clean

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# A second environment with the [tensorflow] extra: the tutorial's own engine.
$(VENV_TF)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TF)
	$(VENV_TF)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_TF)/bin/python -m pip install --quiet -e '.[tensorflow,test]'
	touch $@

setup-tensorflow: $(VENV_TF)/.installed

# The main job: the tutorial's experiment end to end. Resumable: run it again after a cut.
# Without photos on this machine (no DATA, no CNNLAB_DATA, no shared folder), the public archive
# is fetched into data/ first (resumable, checksummed); offline that stops in one line naming DATA=.
run: setup
	$(BIN)/cnnlab reproduce $(if $(DATA),"$(DATA)",--download-to data) --out $(OUT) $(if $(QUICK),--quick)

# The layering (pyproject.toml's import-linter contract) first: a few seconds, and it names the
# offending import; then the suite.
test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/lint-imports

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-tensorflow: setup setup-tensorflow
	CNNLAB_TENSORFLOW_PYTHON=$(VENV_TF)/bin/python $(BIN)/python -m pytest -k tensorflow $(PYTEST_ARGS)

# The whole suite as one JSON document (benchmarks/README.md); QUICK=1 is the smoke test CI runs.
bench: setup
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) $(VENV_TF) cache runs reports .pytest_cache

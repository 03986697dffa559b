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

.PHONY: setup run test test-slow bench clean

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The main job: the tutorial's experiment end to end. Resumable: run it again after a cut.
run: setup
	@test -n "$(DATA)" || { echo "make run: no data; pass DATA=/path/to/photos or set CNNLAB_DATA" >&2; exit 2; }
	$(BIN)/cnnlab reproduce "$(DATA)" --out $(OUT) $(if $(QUICK),--quick)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/data_pipeline.py

clean:
	rm -rf $(VENV) cache runs reports .pytest_cache

# cnnlab: the two quick-start commands are `make run` and `make test`; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The shared Kaggle photos when they are beside this checkout; override with DATA=... or CNNLAB_DATA.
DATA ?= $(or $(CNNLAB_DATA),$(wildcard ../shared/datasets/dogs-vs-cats/train))
CACHE ?= cache/tutorial
PYTEST_ARGS ?=

.PHONY: setup run test test-slow bench clean

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	@test -n "$(DATA)" || { echo "make run: no data; pass DATA=/path/to/photos or set CNNLAB_DATA" >&2; exit 2; }
	$(BIN)/cnnlab survey "$(DATA)"
	$(BIN)/cnnlab prepare "$(DATA)" --out $(CACHE) --split tutorial

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/data_pipeline.py

clean:
	rm -rf $(VENV) cache runs reports .pytest_cache

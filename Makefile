# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project from its own files when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test pytest lint fmt typecheck check bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[collector,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/touchpoint demo

# The whole gate: lint, format, types, then every test. CI runs exactly this.
test: lint typecheck pytest

pytest: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

check: test

# Benchmarks: each prints a table and writes bench/results/<name>.json; the anchors they
# compare against (other SDKs, pandas, pm4py) come from the `bench` extra.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[collector,dev,bench]"
	@if [ -f bench/sdk.py ]; then $(BIN)/python bench/sdk.py; fi
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/map.py
	$(BIN)/python bench/summary.py

schema: $(STAMP)
	$(BIN)/python -m touchpoint_schemas.jsonschema

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

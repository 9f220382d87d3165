# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv/ with the project installed when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/claims-engine demo --out demo-output --history demo-history

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only -p no:cacheprovider -o testpaths=benchmarks -s

lint: $(STAMP)
	$(BIN)/ruff check claims_engine tests benchmarks
	$(BIN)/ruff format --check claims_engine tests benchmarks
	$(BIN)/mypy claims_engine

format: $(STAMP)
	$(BIN)/ruff format claims_engine tests benchmarks
	$(BIN)/ruff check --fix claims_engine tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache

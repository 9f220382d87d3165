# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv/ with the project installed when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint format clean bytecode

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The package's bytecode, as an installed package has it: with
# PYTHONDONTWRITEBYTECODE set (as on the build machine) an editable install
# compiles every module from source at each start (~0.13 s per command).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q claims_engine

demo: bytecode
	$(BIN)/claims-engine demo --out demo-output --history demo-history

test: bytecode
	$(BIN)/python -m pytest

bench: bytecode
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

# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench bench-instructions clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# `make demo PORT=8090` when 8080 is taken.
PORT ?= 8080
demo: $(STAMP)
	$(BIN)/xero-gateway demo --port $(PORT)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/policy_bench.py
	$(BIN)/python bench/proxy_bench.py
	$(BIN)/python bench/xero_bench.py

# Instructions per request under valgrind: steady from run to run, for comparing commits.
bench-instructions: $(STAMP)
	$(BIN)/python bench/instructions.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

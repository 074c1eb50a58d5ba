# DistillGuard: two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: demo test test-slow lint bench clean help

help:
	@echo "make demo   create .venv, install, run DistillGuard end to end on embedded defaults"
	@echo "make test   lint, type-check and run the test suite (PostgreSQL and Redis on localhost)"
	@echo "make bench  run the benchmarks in benchmarks/ (minutes)"
	@echo "make lint   ruff and mypy --strict only"
	@echo "make test-slow  the test suite including tests marked slow (real-data runs)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/distillguard demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup -q

test-slow: lint
	DG_SLOW=1 $(BIN)/pytest -n 2 --dist loadgroup -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache

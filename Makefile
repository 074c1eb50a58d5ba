# DistillGuard: two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output
# Every package of the application and its tests, pinned (pip-compile from pyproject.toml's
# dev extra, which takes in every other extra); `make lock` refreshes it.
LOCK := requirements.lock
PIP_VERSION := 26.3

.PHONY: demo test test-slow lint bench clean help lock test-install

help:
	@echo "make demo   create .venv, install, run DistillGuard end to end on embedded defaults"
	@echo "make test   lint, type-check and run the test suite (PostgreSQL and Redis on localhost)"
	@echo "make bench  run the benchmarks in benchmarks/ (minutes)"
	@echo "make lint   ruff and mypy --strict only"
	@echo "make test-slow  the test suite including tests marked slow (real-data runs)"
	@echo "make lock   re-pin requirements.lock after a change of dependencies in pyproject.toml"
	@echo "make test-install  the core alone in a fresh venv on every Python found (3.11-3.13)"

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

# Keeps the versions already pinned where pyproject.toml still allows them (pip-compile's
# default); `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed release.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
	  --no-emit-find-links $(LOCK_ARGS) --output-file $(LOCK) pyproject.toml
	sed -i '/^distillguard @ /,+1d' $(LOCK)  # dev's distillguard[all]: the project itself

demo: $(STAMP)
	$(BIN)/distillguard demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup -q

test-slow: lint
	DG_SLOW=1 $(BIN)/pytest -n 2 --dist loadgroup -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

test-install: $(STAMP)
	DG_INSTALL=1 $(BIN)/pytest -q -s -p no:xdist tests/install

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache

# The two commands a new user needs: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python

.PHONY: venv test unit e2e lint demo bench-core bench-operator crds cluster-up cluster-down

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check meson tests e2e bench
	$(BIN)/lint-imports

unit: venv
	$(PYTHON) -m pytest -q tests

e2e: venv
	$(PYTHON) -m pytest -q e2e

# Unit tests, lint, then e2e against the embedded real control plane (built on first use).
test: lint unit e2e

crds: venv
	$(PYTHON) -m meson.api.generate

bench-core: venv
	$(PYTHON) -m bench.core

# End-to-end admission throughput of the operator on the embedded control plane (100 kwok nodes).
bench-operator: venv
	$(PYTHON) -m bench.operator

cluster-up: venv
	$(PYTHON) -m e2e.cluster up

cluster-down: venv
	$(PYTHON) -m e2e.cluster down

demo: venv
	$(PYTHON) -m e2e.demo

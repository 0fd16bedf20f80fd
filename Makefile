# Tradebot Operator: developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(shell hack/tools-dir.sh)
export TRADEBOT_TOOLS_BIN := $(TOOLS_BIN)
KUBECTL := $(TOOLS_BIN)/kubectl --kubeconfig .local/kubeconfig --cache-dir .local/kubectl-cache
PYTEST_ARGS ?=
# `make test` runs on this many pytest-xdist workers (each starts its own API server, etcd and
# PostgreSQL; a file's tests stay on one worker). PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= 2
# The other Pythons of the matrix (3.11 is .venv's): unit and contract layers, `make test-matrix`.
PYTHON_MATRIX ?= 3.12

.PHONY: help deps tools venv up down status demo test lint format audit typecheck unit integration e2e contract test-matrix chart images test-images bench bench-records bench-breaker bench-marketdata bench-flood bench-failover bench-backtest-e2e bench-livebot-start bench-hyperopt bench-hyperopt-operator clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing system packages (PostgreSQL server); needs root or sudo
	@hack/install-deps.sh

tools: ## build the pinned etcd, Kubernetes, kwok and helm binaries into ~/.cache/tradebot
	@hack/build-tools.sh

$(BIN)/.installed: pyproject.toml testing/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,runner,ui]'
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

lint: venv ## ruff lint rules and formatting (ruff format --check)
	$(BIN)/ruff check operator testing tests bench hack
	$(BIN)/ruff format --check operator testing tests bench hack

format: venv ## ruff format the Python tree in place
	$(BIN)/ruff format operator testing tests bench hack

audit: venv ## pip-audit the virtualenv; fails on known vulnerabilities not in pip-audit-ignore.txt
	$(BIN)/python hack/audit.py

typecheck: venv ## mypy --strict on the package
	$(BIN)/mypy

test: deps tools venv lint typecheck audit images ## everything CI runs: ruff, mypy --strict, pip-audit, images, pytest (all layers, PYTEST_WORKERS in parallel)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

unit: venv ## only the unit tests
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: tools venv ## only the integration tests
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

e2e: tools venv ## only the end-to-end tests
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

contract: venv ## only the contract tests (real Freqtrade)
	$(BIN)/pytest -m contract $(PYTEST_ARGS)

images: venv ## build the operator and runner images (docker, else buildah), SBOMs, sizes vs budgets (cached: ~/.cache/tradebot/images)
	CYCLONEDX=$(abspath $(BIN))/cyclonedx-py hack/images.sh

test-images: tools venv images ## run the built images: the operator against the local cluster, a backtest, a bot's freqtrade trade
	$(BIN)/pytest -m images $(PYTEST_ARGS)

test-matrix: ## unit + contract layers on each PYTHON_MATRIX version (venvs in ~/.cache/tradebot/venvs)
	@for v in $(PYTHON_MATRIX); do hack/python-matrix.sh "$$v" $(PYTEST_ARGS) || exit 1; done

bench: tools venv ## the queue benchmark (COUNT=1000 LIMIT=10 by default)
	$(BIN)/python bench/backtest_queue.py --count $(or $(COUNT),1000) --limit $(or $(LIMIT),10)

chart: tools ## helm package the chart into dist/ (CHART_VERSION=1.2.3 sets its version and appVersion)
	$(TOOLS_BIN)/helm package charts/tradebot-operator --destination dist $(if $(CHART_VERSION),--version $(CHART_VERSION) --app-version $(CHART_VERSION))

clean: down ## remove the virtualenv and caches (the tool cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

bench-breaker: tools venv ## the breaker benchmark: trip -> COUNT bots REST-stopped and their pods gone vs direct deletion (COUNT=500 FLOOD=0)
	$(BIN)/python bench/breaker.py --count $(or $(COUNT),500) --flood $(or $(FLOOD),0)

bench-marketdata: tools venv ## MarketData through the operator vs freqtrade download-data directly (PAIRS=5 DAYS=60)
	$(BIN)/python bench/marketdata.py --pairs $(or $(PAIRS),5) --days $(or $(DAYS),60)

bench-hyperopt-operator: tools venv ## one hyperopt worker through the operator vs freqtrade hyperopt directly (EPOCHS=8)
	$(BIN)/python bench/hyperopt_operator.py --epochs $(or $(EPOCHS),8)

bench-flood: tools venv ## the flood benchmark: operator RSS with COUNT Backtests waiting (COUNT=10000)
	$(BIN)/python bench/flood.py --count $(or $(COUNT),10000)

bench-failover: tools venv ## the failover benchmark: leader SIGKILLed -> standby's first reconcile and a trip handled (RUNS=5)
	$(BIN)/python bench/failover.py --runs $(or $(RUNS),5)

bench-backtest-e2e: tools venv ## a Backtest through the operator (local executor) vs freqtrade backtesting directly (REPS=5)
	$(BIN)/python bench/backtest_e2e.py --reps $(or $(REPS),5)

bench-livebot-start: tools venv ## COUNT dry-run LiveBots -> pods Running vs COUNT Deployments of the same pod (COUNT=100)
	$(BIN)/python bench/livebot_start.py --count $(or $(COUNT),100)

bench-hyperopt: deps venv ## hyperopt: runner vs freqtrade hyperopt, two workers vs one on a shared study (EPOCHS=40)
	$(BIN)/python bench/hyperopt.py --epochs $(or $(EPOCHS),40)

bench-records: deps venv ## the records benchmark: operator writes vs COPY, a year's report (real PostgreSQL)
	$(BIN)/python bench/records.py

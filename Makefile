# ntmlab: `make run` trains the default model and tracks it in MLflow; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
UI_PORT ?= 5000
SERVER_PORT ?= 5000
SERVER_STORE ?= sqlite:///$(CURDIR)/mlflow.db
SERVER_ARTIFACTS ?= $(CURDIR)/mlartifacts
DASHBOARD_PORT ?= 8080

# Pipelines and `mlflow run --env-manager local` must find the venv's python first.
export PATH := $(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: venv run test test-fast lint format ui server dashboard clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	mlflow run . --env-manager local

# Two workers: much of the suite waits on subprocesses and servers, so two share two cores well.
# Each test's budget is in steps, not seconds, so a slower worker changes no result.
TEST_WORKERS ?= 2
# One intra-op thread per worker (and per process a test starts): two workers of torch's
# default two threads each, plus their subprocesses', oversubscribe two cores and make a
# training test several times slower than it is alone.
TEST_THREADS ?= 1
test: venv
	OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) \
	  python -m pytest -m "slow or not slow" -n $(TEST_WORKERS) --dist worksteal --durations=30

test-fast: venv
	python -m pytest

lint: venv
	ruff check .
	ruff format --check .

format: venv
	ruff check --fix .
	ruff format .

# MLflow 3.17's UI picks GenAI or model training per browser (a switch it keeps in local
# storage); the workflowType parameter of this link opens it on model training.
ui: venv
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/experiments?workflowType=machine_learning"
	mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port $(UI_PORT)

# A tracking server over the same store `make run` writes to (one history), serving artifacts
# from mlartifacts/. Loopback only: binding beyond it belongs behind auth (see README).
server: venv
	mlflow server --backend-store-uri "$(SERVER_STORE)" \
		--artifacts-destination "$(SERVER_ARTIFACTS)" \
		--host 127.0.0.1 --port $(SERVER_PORT)

# Optuna's dashboard over hpo's default study storage ($$NTMLAB_OPTUNA_STORAGE or optuna.db).
dashboard: venv
	python -m pipelines.dashboard --port $(DASHBOARD_PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

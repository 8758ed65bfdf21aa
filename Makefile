# One task runner for developers and CI. `make help` lists the targets.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help setup system-deps demo test lint unit integration bench kafka-stop dashboards

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps:  ## Java 17 + Maven (local Kafka), Prometheus + Alertmanager (rule tests), from Debian if missing
	@command -v java >/dev/null && command -v mvn >/dev/null && command -v promtool >/dev/null \
	  && command -v amtool >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends openjdk-17-jre-headless maven prometheus prometheus-alertmanager)

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,tools]'
	touch $@

setup: system-deps $(BIN)/.installed  ## create .venv with the package and test tools

demo: setup  ## local Kafka + worker + synthetic traffic + live ROI table (Ctrl-C stops all)
	$(BIN)/stream-app demo

lint: setup  ## ruff (lint + format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup  ## pure tests and doctests, no broker
	$(BIN)/pytest stream_app tests/unit $(PYTEST_ARGS)

integration: setup  ## tests against a real Apache Kafka broker started for the session
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: lint  ## everything CI runs: lint, unit and integration tests
	$(BIN)/pytest $(PYTEST_ARGS)

dashboards: setup  ## regenerate grafana/dashboards/*.json from tools/build_dashboards.py
	$(BIN)/python tools/build_dashboards.py

bench: setup  ## throughput: worker vs plain aiokafka on the local broker
	$(BIN)/stream-app kafka start
	$(BIN)/python benchmarks/throughput.py

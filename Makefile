# One task runner for developers and CI. `make help` lists the targets.
# Python packages come only from requirements/*.lock (exact versions and hashes, made with uv by
# `make lock`; docs/development.md). System tools: `demo` only checks for java and mvn;
# `test-deps` installs what the tests need from Debian when it is missing.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
PYTEST_ARGS ?=
LOCK_ARGS ?=
LOCK := requirements/dev.lock
BOOTSTRAP := requirements/bootstrap.lock
UV := $(BIN)/uv
# The locks are resolved for CI's and the developers' machines: CPython 3.11 on Linux x86_64
# (glibc >= 2.28), wheels only, so an install never compiles anything.
UV_COMPILE = $(UV) pip compile --quiet --python $(BIN)/python --generate-hashes --only-binary :all: \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command 'make lock' $(LOCK_ARGS)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600
# Shell function: true when the java the local broker would run ($$JAVA_HOME/bin/java, else java
# on PATH) is 17 or newer.
JAVA17 := java17() { j="$${JAVA_HOME:+$$JAVA_HOME/bin/java}"; [ -x "$$j" ] || j=$$(command -v java) \
  || return 1; v=$$("$$j" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'); \
  [ "$${v:-0}" -ge 17 ]; }

.PHONY: help setup lock demo-deps test-deps system-deps demo test lint unit integration bench \
  kafka-stop dashboards

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo-deps:  ## check for java (17+) and mvn on PATH; installs nothing
	@$(JAVA17); miss=; pkgs=; \
	java17 || { miss="Java 17+ (java)"; pkgs=openjdk-17-jre-headless; }; \
	command -v mvn >/dev/null || { miss="$${miss:+$$miss and }Maven (mvn)"; pkgs="$${pkgs:+$$pkgs }maven"; }; \
	[ -z "$$miss" ] || { echo "make demo needs $$miss on PATH (Debian: apt-get install $$pkgs)" >&2; exit 1; }

test-deps:  ## promtool, amtool, docker-compose (config check only), Java 17+, Maven: apt-get installs the missing ones
	@$(JAVA17); pkgs=; \
	command -v promtool >/dev/null || pkgs="$$pkgs prometheus"; \
	command -v amtool >/dev/null || pkgs="$$pkgs prometheus-alertmanager"; \
	command -v docker-compose >/dev/null || pkgs="$$pkgs docker-compose"; \
	java17 || pkgs="$$pkgs openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || pkgs="$$pkgs maven"; \
	[ -n "$$pkgs" ] || exit 0; \
	echo "test-deps: installing from Debian:$$pkgs"; \
	n=0; until $(APT_GET) update; do \
	  n=$$((n + 1)); [ $$n -lt 60 ] || { echo "test-deps: apt-get update kept failing" >&2; exit 1; }; \
	  echo "test-deps: apt-get update failed (lists locked?); retry in 10 s"; sleep 10; \
	done; \
	$(APT_GET) install -y --no-install-recommends $$pkgs; \
	command -v promtool >/dev/null && command -v amtool >/dev/null && command -v docker-compose >/dev/null \
	  && command -v mvn >/dev/null && java17 \
	  || { echo "test-deps: still missing promtool, amtool, docker-compose, mvn or Java 17+ after apt-get" >&2; exit 1; }

system-deps: test-deps  ## the old name of test-deps

$(BIN)/.bootstrapped: $(BOOTSTRAP)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps --only-binary :all: -r $(BOOTSTRAP)
	touch $@

$(BIN)/.installed: $(BIN)/.bootstrapped $(LOCK) pyproject.toml
	$(UV) pip sync -q --python $(BIN)/python --require-hashes --only-binary :all: $(LOCK) $(BOOTSTRAP)
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	@$(UV) pip check -q --python $(BIN)/python || { echo "$(LOCK) does not satisfy pyproject.toml:" \
	  "run 'make lock' (docs/development.md)" >&2; exit 1; }
	touch $@

setup: $(BIN)/.installed  ## .venv from requirements/dev.lock (hash-checked), then the package (-e, no deps)

lock: $(BIN)/.bootstrapped  ## re-resolve requirements/*.lock, keeping pins (LOCK_ARGS=--upgrade: newest)
	$(UV_COMPILE) -o $(BOOTSTRAP) requirements/bootstrap.in
	$(UV_COMPILE) -o $(LOCK) pyproject.toml --extra test --extra tools

demo: demo-deps setup  ## local Kafka + worker + synthetic traffic + live ROI table (Ctrl-C stops all)
	$(BIN)/stream-app demo

lint: setup  ## ruff (lint + format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: test-deps setup  ## pure tests and doctests, no broker
	$(BIN)/pytest stream_app tests/unit $(PYTEST_ARGS)

integration: test-deps setup  ## tests against a real Apache Kafka broker started for the session
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: test-deps lint  ## everything CI runs: lint, unit and integration tests
	$(BIN)/pytest $(PYTEST_ARGS)

dashboards: setup  ## regenerate grafana/dashboards/*.json from tools/build_dashboards.py
	$(BIN)/python tools/build_dashboards.py

# Starts the local broker if none runs, and then stops it, whatever way the benchmark ends;
# a broker that was already running is left running (tests/unit/cli/test_make_bench.py).
bench: demo-deps setup  ## throughput: worker end to end vs raw consumers on the local broker
	@started=; trap '[ -z "$$started" ] || $(BIN)/stream-app kafka stop' EXIT; \
	trap 'exit 130' INT TERM; \
	$(BIN)/stream-app kafka status >/dev/null 2>&1 || { started=1; $(BIN)/stream-app kafka start; } \
	  && $(BIN)/python benchmarks/throughput.py

kafka-stop:  ## stop the local broker (demo, bench and the tests start it)
	@if [ -x $(BIN)/stream-app ]; then $(BIN)/stream-app kafka stop; else echo "no $(BIN)/stream-app: nothing to stop"; fi

# onceflow: exactly-once stream processing on Apache Flink from Python.
# `make help` lists the targets. Everything downloaded lands in git-ignored
# folders: .venv (Python), .cache/jars (Java), run/ (broker, cluster, checkpoints).

SHELL        := /bin/bash
PYTHON_BASE  ?= python3.11
VENV         := .venv
PY           := $(VENV)/bin/python
ONCEFLOW     := $(VENV)/bin/onceflow
MVN          ?= mvn
JARS         := .cache/jars
JOB          ?= dedup
ARGS         ?=
PYTEST_ARGS  ?=
PG_BIN       ?= /usr/lib/postgresql/15/bin
# Job lifecycle and transactions: make stop JOB_ID=..., make resume SAVEPOINT=... P=3
JOB_ID       ?=
SAVEPOINT    ?=
P            ?=
PREFIX       ?=
REGISTRY     ?=

.DEFAULT_GOAL := help
.PHONY: help setup venv jars postgres up down status cluster-up cluster-down run submit demo \
        jobs stop cancel resume txn txn-hanging \
        test test-unit test-plan test-it test-ops test-slow lint bench bench-smoke verify verify-long clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

setup: venv jars postgres ## create .venv, install onceflow (editable, pinned) and resolve the Java artifacts

venv: $(VENV)/.installed ## the Python environment only

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON_BASE) >/dev/null || { echo "error: $(PYTHON_BASE) not found; onceflow needs CPython 3.11 (PyFlink 2.2 supports 3.9-3.12)"; exit 1; }
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==25.3"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
	@touch $@

jars: $(JARS)/kafka/.resolved $(JARS)/flink/.resolved $(JARS)/registry/.resolved $(JARS)/jdbc/.resolved ## resolve the pinned Java artifacts (java/*/pom.xml) with Maven

# `onceflow jars` runs Maven and writes the stamp (the manifest's SHA-256) itself.
$(JARS)/%/.resolved: java/%/pom.xml $(VENV)/.installed
	@command -v $(MVN) >/dev/null || { echo "error: Maven (mvn) not found; install it (apt-get install maven) to resolve the Java artifacts"; exit 1; }
	$(ONCEFLOW) jars --kind $*
	@touch $@

# The JDBC glue (java/jdbc-glue): built here, copied with the JDBC connector and the
# PostgreSQL driver into .cache/jars/jdbc; jobs attach them only when they write PostgreSQL.
$(JARS)/jdbc/.resolved: java/jdbc-glue/pom.xml $(shell find java/jdbc-glue/src -name '*.java' 2>/dev/null)
	@command -v $(MVN) >/dev/null || { echo "error: Maven (mvn) not found; install it (apt-get install maven) to resolve the Java artifacts"; exit 1; }
	@rm -rf $(JARS)/jdbc && mkdir -p $(JARS)/jdbc
	$(MVN) -q -B -f java/jdbc-glue/pom.xml package dependency:copy-dependencies \
	  -DoutputDirectory=$(CURDIR)/$(JARS)/jdbc -DincludeScope=runtime \
	  -DexcludeArtifactIds=checker-qual
	cp .cache/build/jdbc-glue/onceflow-jdbc-glue.jar $(JARS)/jdbc/
	@touch $@

postgres: ## install PostgreSQL 15 (Debian's package) when it is missing
	@test -x $(PG_BIN)/pg_ctl || { \
	  command -v apt-get >/dev/null || { echo "error: $(PG_BIN)/pg_ctl is missing and apt-get is not available; install the PostgreSQL 15 server"; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

up: setup ## start the local KRaft Kafka broker and PostgreSQL server (idempotent); REGISTRY=1 adds the schema registry
	$(ONCEFLOW) stack up $(if $(REGISTRY),--registry)

down: ## stop the local Kafka broker, PostgreSQL server and schema registry
	@test -x $(ONCEFLOW) && $(ONCEFLOW) stack down || true

status: ## report the local broker, PostgreSQL server, schema registry and Flink cluster
	@test -x $(ONCEFLOW) && $(ONCEFLOW) stack status || echo "not set up: run make setup"

cluster-up: setup ## start a standalone Flink cluster (web UI on localhost:8081)
	$(ONCEFLOW) cluster up

cluster-down: ## stop the standalone Flink cluster
	@test -x $(ONCEFLOW) && $(ONCEFLOW) cluster down || true

run: up ## run a job on the local mini-cluster: make run JOB=dedup ARGS="--input-topic ..."
	$(PY) -m onceflow.jobs.$(JOB) $(ARGS)

submit: up ## submit a job to the standalone cluster: make submit JOB=dedup ARGS="..."
	$(ONCEFLOW) cluster submit jobs/$(JOB).py -- $(ARGS)

jobs: ## jobs on the standalone cluster: state, parallelism, last checkpoint and its age
	$(ONCEFLOW) cluster jobs

stop: ## stop a job with a savepoint, print its path: make stop [JOB_ID=...] (default: the only running job)
	$(ONCEFLOW) cluster stop $(JOB_ID) --savepoint

cancel: ## cancel a job, keep its retained checkpoints: make cancel [JOB_ID=...]
	$(ONCEFLOW) cluster cancel $(JOB_ID)

resume: ## resume a job: make resume JOB=dedup SAVEPOINT=<path> [P=3] ARGS="<the job's flags>"
	@test -n "$(SAVEPOINT)" || { echo "error: set SAVEPOINT=<path> (make stop prints it)"; exit 2; }
	$(ONCEFLOW) cluster submit jobs/$(JOB).py --detached --from-savepoint $(SAVEPOINT) \
	  $(if $(P),--parallelism $(P)) -- $(ARGS)

txn: ## open Kafka transactions (state, age, partitions, LSO lag): make txn [PREFIX=...]
	$(ONCEFLOW) txn list $(if $(PREFIX),--prefix $(PREFIX))

txn-hanging: ## transactions open over 5 min or hanging (exit 1 when any) [PREFIX=...]
	$(ONCEFLOW) txn find-hanging $(if $(PREFIX),--prefix $(PREFIX))

demo: up ## produce a workload, run the main job end to end, check the output
	$(ONCEFLOW) demo $(ARGS)

test: setup ## run every tier (unit, plan, it); starts and stops its own broker
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## pure-Python tests only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-plan: setup ## JVM tests that need no broker
	$(PY) -m pytest -m plan $(PYTEST_ARGS)

test-slow: setup ## the longer ITs kept out of make test (Avro ITs, versioned rescale, PostgreSQL crash steps, 100k dedup)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-ops: setup ## the job lifecycle and transaction ITs only (dedup and versioned rescale 2->3->1, refusals, txn; ~4-6 min)
	$(PY) -m pytest -m "slow or not slow" tests/it/test_rescale.py tests/it/test_rescale_versioned.py tests/it/test_transactions.py $(PYTEST_ARGS)

test-it: setup ## integration tests (real broker + Flink)
	$(PY) -m pytest -m it $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy onceflow

bench: up ## benchmarks (600,000 records; compared rows 3x, their median), ~1 h, not in make test -> bench/results/ (ARGS="--only flink,sql")
	$(PY) -m onceflow.bench $(ARGS)

bench-smoke: up ## the benchmark harness on a tiny workload, references run twice (~80 s; also part of make test)
	$(PY) -m pytest tests/it/test_bench_smoke.py $(PYTEST_ARGS)

verify: up ## short fault-injection verification profile: make verify [JOB=versioned_upsert|versioned_upsert_postgres]
	$(ONCEFLOW) verify --profile short --job $(subst _,-,$(JOB)) $(ARGS)

verify-long: up ## full fault-injection verification profile (>= 20 faults; fails over the recovery-time targets) [JOB=...]
	$(ONCEFLOW) verify --profile long --stall-targets --job $(subst _,-,$(JOB)) $(ARGS)

clean: down cluster-down ## stop everything and remove run/ (keeps .venv and .cache)
	rm -rf run

"""Fixtures shared by the three tiers.

- ``kafka_bootstrap`` (session): the project's own KRaft broker, started for the
  session and stopped after it (or left alone when it was already running); a
  broker that cannot start fails the run, it never skips. ``KAFKA_BOOTSTRAP``
  points the suite at a broker you already run instead.
- ``postgres_url`` (session): the project's own PostgreSQL server (``onceflow
  stack``), started for the session like the broker and never skipped;
  ``ONCEFLOW_PG_URL`` points the suite at a database you already run (it needs
  ``max_prepared_transactions > 0``).
- ``schema_registry_url`` (session): the project's own schema registry (``onceflow stack
  up --registry``: Apicurio, Confluent-compatible API), started and stopped like the
  broker and never skipped; ``ONCEFLOW_REGISTRY_URL`` points the suite at a
  Confluent-compatible registry you already run.
- ``flink_cluster`` (session): a standalone Flink cluster of the project's own (one
  JobManager, two TaskManagers, ``onceflow cluster``) for the job lifecycle ITs, started
  on first use and stopped after the session (left alone when it was already running).
- ``topic_factory`` / ``unique_name``: per-test topics, groups and transactional
  id prefixes (``it_<test>_<uuid>``) so tests never see each other's data.

Markers follow the folders: tests/unit -> unit, tests/plan -> plan, tests/it -> it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from onceflow.runtime.flinkenv import prepare_python_path

if TYPE_CHECKING:
    from onceflow.local.cluster import LocalFlinkCluster

# Before any test starts the PyFlink gateway, whichever runs first: the JVM (and the
# Python it embeds in thread mode) inherits PYTHONPATH only when it starts.
prepare_python_path()

TIERS = ("unit", "plan", "it")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A transaction-ready broker: ``$KAFKA_BOOTSTRAP`` or the project's own."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        from onceflow.local.broker import commit_probe_transaction

        commit_probe_transaction(external)  # fails the run loudly if unusable
        yield external
        return
    from onceflow.local.broker import LocalKafka

    broker = LocalKafka()
    was_running = broker.status().running
    broker.up(timeout=180)
    yield broker.bootstrap
    if not was_running:
        broker.down()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A reachable PostgreSQL database URL: ``$ONCEFLOW_PG_URL`` or the project's own."""
    external = os.environ.get("ONCEFLOW_PG_URL")
    if external:
        import psycopg

        with psycopg.connect(external, connect_timeout=10) as conn:  # fails the run loudly
            conn.execute("SELECT 1")
        yield external
        return
    from onceflow.local.postgres import LocalPostgres

    server = LocalPostgres()
    was_running = server.status().running
    server.up(timeout=120)
    yield server.url
    if not was_running:
        server.down()


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """A Confluent-compatible registry API URL: ``$ONCEFLOW_REGISTRY_URL`` or the project's
    own (``.../apis/ccompat/v7``)."""
    external = os.environ.get("ONCEFLOW_REGISTRY_URL")
    if external:
        from onceflow.avro.registry import SchemaRegistry

        SchemaRegistry(external).subjects()  # fails the run loudly if unusable
        yield external
        return
    from onceflow.local.registry import LocalRegistry

    registry = LocalRegistry()
    was_running = registry.status().running
    registry.up(timeout=180)
    yield registry.url
    if not was_running:
        registry.down()


@pytest.fixture(scope="session")
def flink_cluster() -> Iterator[LocalFlinkCluster]:
    """A standalone cluster with 2 TaskManagers (4 slots): rescales up to parallelism 3."""
    from onceflow.local.cluster import LocalFlinkCluster

    flink = LocalFlinkCluster(taskmanagers=2)
    was_running = flink.status().running
    flink.up(timeout=180)
    yield flink
    if not was_running:
        flink.down()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("out")`` -> ``it_<test>_out_<uuid8>``: topics, groups, prefixes."""
    test = _slug(request.node.name)

    def make(hint: str) -> str:
        return f"it_{test}_{_slug(hint)}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """``topic_factory("in", partitions=1)`` creates a fresh topic and returns its name."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)

    def create(hint: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name(hint)
        options = {"num_partitions": partitions, "replication_factor": 1, "configs": config or {}}
        admin.create_topics({name: options}, wait_for_metadata=True)
        return name

    yield create
    admin.close()

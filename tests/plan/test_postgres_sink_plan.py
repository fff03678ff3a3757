"""A stream of Rows into the PostgreSQL sink, compiled without a server (JVM only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onceflow.runtime.flinkenv import FlinkSettings, create_env
from onceflow.runtime.java import jdbc_jars
from onceflow.sinks.postgres import PgColumn, PostgresSinkSpec, ServerFacts, attach_postgres_sink

COLUMNS = (PgColumn("id", "STRING", False), PgColumn("record", "JSONB"))
FACTS = ServerFacts("15", 100, 100, 3, 1, 0, {"id": "text", "record": "jsonb"}, ())


def _compile(guarantee: str) -> tuple[list[dict[str, Any]], list[tuple[str, str | None]]]:
    from pyflink.common import Row, Types

    env = create_env(FlinkSettings(parallelism=2, checkpoint_interval_ms=1000))
    rows = env.from_collection(
        [Row("a", "{}")], type_info=Types.ROW_NAMED(["id", "record"], [Types.STRING()] * 2)
    )
    spec = PostgresSinkSpec(
        url="postgresql://u:pw@127.0.0.1:1/db",
        table="ledger",
        columns=COLUMNS,
        guarantee=guarantee,
        parallelism=1,
        uid="ledger-sink",
    )
    env.add_jars(*jdbc_jars())
    attach_postgres_sink(env, rows, spec, checkpoint_interval_ms=1000, facts=FACTS)
    plan = json.loads(env.get_execution_plan())["nodes"]
    graph = env._generate_stream_graph(clear_transformations=False)
    nodes = [
        (n.getOperatorName(), n.getTransformationUID()) for n in graph.getStreamNodes().toArray()
    ]
    return plan, nodes


@pytest.fixture(scope="module")
def exactly_once() -> tuple[list[dict[str, Any]], list[tuple[str, str | None]]]:
    return _compile("exactly-once")


def test_exactly_once_sink_has_writer_and_committer_with_pinned_parallelism(
    exactly_once: Any,
) -> None:
    plan, _ = exactly_once
    sinks = {n["type"]: n["parallelism"] for n in plan if n["type"].startswith("ledger-sink")}
    assert sinks == {"ledger-sink: Writer": 1, "ledger-sink: Committer": 1}, plan


def test_sink_operators_carry_the_uid(exactly_once: Any) -> None:
    _, nodes = exactly_once
    uids = {name: uid for name, uid in nodes if name.startswith("ledger-sink")}
    # Flink derives the committer's uid from the writer's.
    assert uids == {
        "ledger-sink: Writer": "ledger-sink",
        "ledger-sink: Committer": "Sink Committer: ledger-sink",
    }, uids


def test_password_is_not_in_the_plan(exactly_once: Any) -> None:
    plan, _ = exactly_once
    assert "pw" not in json.dumps([n["contents"] for n in plan])

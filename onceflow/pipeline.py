"""Wiring shared by the jobs: Kafka in as rows, routed rows out to 2PC sinks.

A job's Python operator emits ``Row(route, k, v)``: ``route`` names the output
(``out``, ``dlq``, ``stale``, ...), ``k``/``v`` are the Kafka key and value bytes.
``write_routes`` filters each route in the JVM and inserts it into its own
validated Kafka sink, so every output of a job (including its dead letters) is
written with the same delivery guarantee and committed on the same checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from onceflow.kafka_source import KafkaSourceSpec, kafka_source_descriptor
from sinks.kafka import (
    KafkaSinkSpec,
    broker_transaction_max_timeout_ms,
    kafka_sink_descriptor,
    validate_sink,
)

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, StreamExecutionEnvironment
    from pyflink.table import StatementSet, StreamTableEnvironment

__all__ = [
    "ROUTED_NAMES",
    "routed_type",
    "table_env",
    "read_kafka",
    "write_routes",
    "validate_sinks",
]

log = logging.getLogger(__name__)

ROUTED_NAMES = ["route", "k", "v"]


def routed_type() -> Any:
    """Row type of an operator's routed output: route STRING, k BYTES, v BYTES."""
    from pyflink.common import Types

    return Types.ROW_NAMED(
        ROUTED_NAMES,
        [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.PRIMITIVE_ARRAY(Types.BYTE())],
    )


def table_env(env: StreamExecutionEnvironment) -> StreamTableEnvironment:
    from pyflink.table import StreamTableEnvironment

    return StreamTableEnvironment.create(env)


def read_kafka(
    tenv: StreamTableEnvironment, spec: KafkaSourceSpec, name: str = "source"
) -> DataStream:
    """Rows ``(v, topic, partition, offset)`` from ``KafkaSource`` (see kafka_source)."""
    tenv.create_temporary_table(name, kafka_source_descriptor(spec))
    return tenv.to_data_stream(tenv.from_path(name))


def validate_sinks(
    specs: Mapping[str, KafkaSinkSpec],
    *,
    checkpoint_interval_ms: int,
    restart_budget_ms: int,
) -> None:
    """Refuse unsafe sink settings before the job starts (one broker read per cluster)."""
    limits: dict[str, int | None] = {}
    for spec in specs.values():
        if spec.guarantee != "exactly-once":
            continue
        if spec.bootstrap not in limits:
            limits[spec.bootstrap] = broker_transaction_max_timeout_ms(spec.bootstrap)
        validate_sink(
            spec,
            checkpoint_interval_ms=checkpoint_interval_ms,
            restart_budget_ms=restart_budget_ms,
            broker_max_timeout_ms=limits[spec.bootstrap],
        )


def write_routes(
    tenv: StreamTableEnvironment,
    routed: DataStream,
    specs: Mapping[str, KafkaSinkSpec],
    *,
    unkeyed: frozenset[str] = frozenset(),
) -> StatementSet:
    """Insert each route of ``routed`` into its sink and attach them to the job.

    :param specs: route name -> sink; every route the operator emits needs one.
    :param unkeyed: routes written without a key.
    :returns: the statement set, already attached to the DataStream job.
    """
    from pyflink.table.expressions import col

    table = tenv.from_data_stream(routed)
    statements = tenv.create_statement_set()
    for route, spec in specs.items():
        sink_name = f"sink_{route}"
        keyed = route not in unkeyed
        tenv.create_temporary_table(sink_name, kafka_sink_descriptor(spec, keyed=keyed))
        selected = table.where(col("route") == route)
        selected = selected.select(col("k"), col("v")) if keyed else selected.select(col("v"))
        statements.add_insert(sink_name, selected)
    statements.attach_as_datastream()
    return statements

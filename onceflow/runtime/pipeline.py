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

from onceflow.runtime.kafka_source import KafkaSourceSpec, kafka_source_descriptor
from onceflow.sinks.kafka import (
    KafkaSinkSpec,
    broker_transaction_max_timeout_ms,
    kafka_sink_descriptor,
    topic_max_message_bytes,
    validate_record_size,
    validate_sink,
)

if TYPE_CHECKING:
    from pyflink.datastream import (
        DataStream,
        KeyedStream,
        OutputTag,
        StreamExecutionEnvironment,
    )
    from pyflink.table import StatementSet, StreamTableEnvironment

__all__ = [
    "ROUTED_NAMES",
    "routed_type",
    "side_output",
    "table_env",
    "read_kafka",
    "keyed_row_type",
    "read_kafka_keyed",
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


def keyed_row_type() -> Any:
    """Row type of JVM-keyed source records: key STRING, then the source columns."""
    from pyflink.common import Types

    return Types.ROW_NAMED(
        ["key", "v", "topic", "partition", "offset"],
        [
            Types.STRING(),
            Types.PRIMITIVE_ARRAY(Types.BYTE()),
            Types.STRING(),
            Types.INT(),
            Types.LONG(),
        ],
    )


def read_kafka_keyed(
    tenv: StreamTableEnvironment, spec: KafkaSourceSpec, key_sql: str, name: str = "source"
) -> KeyedStream:
    """Source rows ``(key, v, topic, partition, offset)`` keyed by ``key_sql``.

    ``key_sql`` is a STRING expression over the source columns that never yields
    a lone surrogate (see :func:`onceflow.operators.records.sql_unicode_safe`): the key
    crosses into Python, and such a string would fail the task on every replay.
    The key is computed and the stream partitioned in the JVM, so the keyed Python
    operator after it is the only Python call per record. PyFlink's ``key_by``
    always runs its key selector in Python (an extra Python operator); this builds
    the same keyed stream it would (rows ``(key, record)`` partitioned on field 0
    by PyFlink's own ``KeyByKeySelector``) from a SQL projection instead. The
    record repeats the key, so the operator can check its key contract without a
    call back into the JVM.
    """
    from pyflink.common import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    tenv.create_temporary_table(name, kafka_source_descriptor(spec))
    keyed_rows = tenv.sql_query(
        f"SELECT `key`, ROW(`key`, `v`, `topic`, `partition`, `offset`) AS `rec` "
        f"FROM (SELECT {key_sql} AS `key`, `v`, `topic`, `partition`, `offset` FROM `{name}`)"
    )
    record = keyed_row_type()
    # to_append_stream (not to_data_stream): the keyed Python operator needs a
    # RowTypeInfo, and to_data_stream yields an ExternalTypeInfo.
    pairs = tenv.to_append_stream(
        keyed_rows, Types.ROW_NAMED(["key", "rec"], [Types.STRING(), record])
    )
    j_keyed = pairs._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, record, pairs)


def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """The rows ``stream``'s operator emitted to ``tag``, typed by the tag.

    PyFlink's ``get_side_output`` appends a Python identity map (one more Python
    call per side-output record); the Python operator already emits the tag's
    declared type to the JVM, so the Java side output is used as it is.
    """
    from pyflink.datastream import DataStream

    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))


def validate_sinks(
    specs: Mapping[str, KafkaSinkSpec],
    *,
    checkpoint_interval_ms: int,
    restart_budget_ms: int,
) -> None:
    """Refuse unsafe sink settings before the job starts (one broker read per cluster,
    one topic read per sink that declares its largest record)."""
    limits: dict[str, int | None] = {}
    for spec in specs.values():
        if spec.max_value_bytes is not None:
            validate_record_size(spec, topic_max_message_bytes(spec.bootstrap, spec.topic))
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

"""The JVM path of the versioned update: one Python call per record, the state and
the decision in the JVM.

For JSON change events, :func:`versioned_json_in_jvm` plans:

1. each record crosses into Python once: :class:`~onceflow.operators.versioned.flink.ChangeFunction`
   parses and validates it with the Python path's own code and encodes what the
   decision needs (payload JSON, content hash, key JSON), or writes its dead
   letter (a Flink SQL query, its result a stream again, in the JVM);
2. ``dev.onceflow.udf.VersionedDecision``, a Java keyed function (keyed by entity
   key), holds the version state and decides: the core's checks in the same
   order with the same reasons and the same state TTL; it writes the applied
   records and the applied-changes rows, and the stale and conflict reports from
   the encoded pieces, and passes the dead letters on. Its outputs go straight to
   the sinks: no record crosses into Python twice, none is converted between a
   table and a stream again (each conversion costs a copy of every record).

The outputs are those of the Python path (:class:`~onceflow.operators.versioned.stream.Versioned`),
same types, same bytes (the differential test runs both on the hostile corpus).

Savepoints: the operators' uids are ``<uid>-jvm-...`` (the keyed function:
``<uid>-jvm``), the Python path's operator is ``<uid>``: the state layouts
differ, a savepoint of one path does not restore into the other (Flink refuses
it; with ``--allow-non-restored-state`` the job starts with empty versioned
state).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from onceflow.streams import kafka_record_type, number_repeated_uids, stable_uids, table_env
from onceflow.udf import attach_udf_jar, java_function, output_tag

if TYPE_CHECKING:
    from pyflink.datastream import DataStream

    from onceflow.operators.versioned.core import ChangeSchema

__all__ = ["versioned_json_in_jvm"]

_views = itertools.count()


def versioned_json_in_jvm(
    stream: DataStream,
    schema: ChangeSchema,
    *,
    mode: str,
    ttl_ms: int | None,
    max_record_bytes: int,
    dead_letter_max_bytes: int,
    uid: str,
) -> tuple[DataStream, DataStream, DataStream, DataStream, DataStream]:
    """JSON change events applied in the JVM: ``(applied, stale, conflicts,
    dead_letters, changes)``, the Python path's outputs.

    :param stream: JSON records (:func:`onceflow.streams.json_record_type`, or keyed).
    :param uid: the prefix of every operator's uid: ``<uid>-jvm-...``.
    """
    from pyflink.table.udf import udf

    from onceflow.operators.versioned.flink import (
        CHANGE_FIELDS,
        ChangeFunction,
        sql_key_expression,
    )

    env = stream.get_execution_environment()
    attach_udf_jar(env)
    tenv = table_env(env)
    view = f"onceflow_versioned_{next(_views)}"
    function = f"{view}_change"
    tenv.create_temporary_function(
        function,
        udf(
            ChangeFunction(schema, max_record_bytes, dead_letter_max_bytes, uid=uid),
            result_type=CHANGE_FIELDS.row_type(),
        ),
    )
    raw = f"{view}_raw"
    tenv.create_temporary_view(raw, tenv.from_data_stream(stream))
    with stable_uids(tenv, f"{uid}-jvm-parse"):
        table = tenv.sql_query(
            f"SELECT {function}(`v`, {sql_key_expression(schema)}, `topic`, `partition`, "
            f"`offset`) AS `c`, `topic`, `partition`, `offset` FROM `{raw}`"
        )
        parsed = tenv.to_append_stream(table, _parsed_type(CHANGE_FIELDS.type_info()))
    number_repeated_uids(parsed, stream)
    return _decided_in_java(parsed, mode, ttl_ms, uid)


def _decided_in_java(
    parsed: DataStream, mode: str, ttl_ms: int | None, uid: str
) -> tuple[DataStream, DataStream, DataStream, DataStream, DataStream]:
    """The parsed changes keyed by entity and decided by ``dev.onceflow.udf.VersionedDecision``
    (a Java keyed function, built here through the gateway: PyFlink has no wrapper for a
    Java function): ``(applied, stale, conflicts, dead_letters, changes)``."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream as PyDataStream

    from onceflow.operators.versioned.flink import CHANGES_SCHEMA

    record = kafka_record_type()
    kinds = {"stale": record, "conflicts": record, "dead-letters": record,
             "changes": CHANGES_SCHEMA.type_info()}  # fmt: skip
    tags = {name: output_tag(f"{uid}-jvm-{name}", kind) for name, kind in kinds.items()}
    decision = java_function(
        "VersionedDecision",
        mode, ttl_ms or 0, tags["stale"], tags["conflicts"], tags["dead-letters"], tags["changes"],
    )  # fmt: skip
    keyed = parsed._j_data_stream.keyBy(
        java_function("VersionedDecision.EntityKey"), Types.STRING().get_java_type_info()
    )
    applied = keyed.process(decision, record.get_java_type_info()).uid(f"{uid}-jvm").name(uid)
    return (
        PyDataStream(applied),
        PyDataStream(applied.getSideOutput(tags["stale"])),
        PyDataStream(applied.getSideOutput(tags["conflicts"])),
        PyDataStream(applied.getSideOutput(tags["dead-letters"])),
        PyDataStream(applied.getSideOutput(tags["changes"])),
    )


def _parsed_type(change: Any) -> Any:
    """``Row(c <change>, topic, partition, offset)``: the Python call's result and the
    record's source position."""
    from pyflink.common import Types

    return Types.ROW_NAMED(
        ["c", "topic", "partition", "offset"], [change, Types.STRING(), Types.INT(), Types.LONG()]
    )

"""The JVM path of the versioned update: one Python call per record, the state and
the decision in the JVM.

For JSON change events, :func:`versioned_json_in_jvm` plans:

1. each record crosses into Python once: :class:`~onceflow.operators.versioned.flink.ChangeFunction`
   parses and validates it with the Python path's own code and encodes what the
   decision needs (payload JSON, content hash, key JSON), or writes its dead
   letter; in a translation of its own, so the queries below read its result
   instead of calling Python again;
2. valid events go to ``dev.onceflow.udf.VersionedDecision``, a Java process table
   function partitioned by entity key: the core's decision (same checks, same
   order, same reasons) over Flink keyed state, with the stale and conflict
   reports written in the JVM from the encoded pieces;
3. its tagged output comes back as a stream once and splits in SQL (the JVM) into
   the applied records, the stale and conflicting reports and the applied-changes
   rows; the dead letters are the Python call's.

The outputs are those of the Python path (:class:`~onceflow.operators.versioned.stream.Versioned`),
same types, same bytes (the differential test runs both on the hostile corpus).

Savepoints: the operators' uids are ``<uid>-jvm-...``, the Python path's operator
is ``<uid>``: the state layouts differ, a savepoint of one path does not restore
into the other (Flink refuses it; with ``--allow-non-restored-state`` the job
starts with empty versioned state).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from onceflow.operators.faults import armed_faults
from onceflow.streams import (
    JSON_FIELDS,
    kafka_record_type,
    number_repeated_uids,
    sql_literal,
    stable_uids,
    table_env,
    table_settings,
)
from onceflow.udf import FAIL_ONCE, VERSIONED_DECISION, attach_udf_jar, register_udfs

if TYPE_CHECKING:
    from pyflink.datastream import DataStream

    from onceflow.operators.versioned.core import ChangeSchema

__all__ = ["versioned_json_in_jvm"]

_views = itertools.count()

_DECIDED_FIELDS = (
    ("k", "STRING"),
    ("kind", "STRING"),
    ("v", "BYTES"),
    ("version", "BIGINT"),
    ("op", "STRING"),
    ("payload_json", "STRING"),
    ("expected_version", "BIGINT"),
    ("replaced_version", "BIGINT"),
    ("source_topic", "STRING"),
    ("source_partition", "INT"),
    ("source_offset", "BIGINT"),
    ("applied_ms", "BIGINT"),
)
"""The decision's output: the partition key, then VersionedDecision's columns."""


def _row_type(fields: tuple[tuple[str, str], ...]) -> Any:
    from pyflink.common import Types

    kinds = {
        "STRING": Types.STRING(),
        "BIGINT": Types.LONG(),
        "INT": Types.INT(),
        "BYTES": Types.PRIMITIVE_ARRAY(Types.BYTE()),
    }
    return Types.ROW_NAMED([name for name, _ in fields], [kinds[kind] for _, kind in fields])


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
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from onceflow.operators.versioned.flink import (
        CHANGE_FIELDS,
        CHANGES_SCHEMA,
        ChangeFunction,
        sql_key_expression,
    )

    env = stream.get_execution_environment()
    attach_udf_jar(env)
    tenv = table_env(env)
    register_udfs(tenv)
    view = f"onceflow_versioned_{next(_views)}"
    sql_types = {"STRING": DataTypes.STRING(), "BIGINT": DataTypes.BIGINT(),
                 "BYTES": DataTypes.BYTES()}  # fmt: skip
    result = DataTypes.ROW([DataTypes.FIELD(n, sql_types[t]) for n, t in CHANGE_FIELDS])
    function = f"{view}_change"
    tenv.create_temporary_function(
        function,
        udf(ChangeFunction(schema, max_record_bytes, dead_letter_max_bytes), result_type=result),
    )
    raw = f"{view}_raw"
    columns = ", ".join(f"`{name}`" for name in JSON_FIELDS)
    tenv.create_temporary_view(raw, tenv.from_data_stream(stream))
    with stable_uids(tenv, f"{uid}-jvm-parse"):
        table = tenv.sql_query(
            f"SELECT {function}(`v`, {sql_key_expression(schema)}, `topic`, `partition`, "
            f"`offset`) AS `c`, {columns} FROM `{raw}`"
        )
        parsed = tenv.to_append_stream(table, _parsed_type(CHANGE_FIELDS))
    number_repeated_uids(parsed, stream)
    tenv.create_temporary_view(f"{view}_parsed", tenv.from_data_stream(parsed))

    with stable_uids(tenv, f"{uid}-jvm-dead-letters"):
        letters = tenv.sql_query(
            f"SELECT `c`.`dl_key` AS `key`, `c`.`dl` AS `v` FROM `{view}_parsed` "
            "WHERE `c`.`k` IS NULL"
        )
        dead_letters = tenv.to_append_stream(letters, kafka_record_type())
    number_repeated_uids(dead_letters, parsed)

    event_columns = ", ".join(
        f"`c`.`{name}` AS `{name}`" for name, _ in CHANGE_FIELDS if not name.startswith("dl")
    )
    tenv.create_temporary_view(
        f"{view}_events",
        tenv.sql_query(
            f"SELECT {event_columns}, `topic`, `partition`, `offset` FROM `{view}_parsed` "
            f"WHERE `c`.`k` IS NOT NULL{_fault_condition(uid)}"
        ),
    )
    ttl = f"{ttl_ms or 0} ms"
    with stable_uids(tenv, f"{uid}-jvm"), table_settings(tenv, {"table.exec.state.ttl": ttl}):
        decisions = tenv.sql_query(
            f"SELECT * FROM {VERSIONED_DECISION}(input => TABLE `{view}_events` PARTITION BY `k`, "
            f"mode => {sql_literal(mode)}, ttl_ms => CAST({ttl_ms or 0} AS BIGINT), "
            f"uid => {sql_literal(f'{uid}-decision')})"
        )
        decided = tenv.to_append_stream(decisions, _row_type(_DECIDED_FIELDS))
    number_repeated_uids(decided, parsed)
    tenv.create_temporary_view(f"{view}_decided", tenv.from_data_stream(decided))

    def split(name: str, select: str, kind: str, type_info: Any) -> DataStream:
        with stable_uids(tenv, f"{uid}-jvm-{name}"):
            table = tenv.sql_query(
                f"SELECT {select} FROM `{view}_decided` WHERE `kind` = {sql_literal(kind)}"
            )
            out = tenv.to_append_stream(table, type_info)
        number_repeated_uids(out, decided)
        return out

    record = "`k` AS `key`, `v`"
    changes = ", ".join(["`k` AS `key`"] + [f"`{name}`" for name, _ in _DECIDED_FIELDS[3:]])
    return (
        split("applied", record, "applied", kafka_record_type()),
        split("stale", record, "stale", kafka_record_type()),
        split("conflicts", record, "conflict", kafka_record_type()),
        dead_letters,
        split("changes", changes, "applied", CHANGES_SCHEMA.type_info()),
    )


def _parsed_type(change_fields: tuple[tuple[str, str], ...]) -> Any:
    """``Row(c Row(<change_fields>), v, topic, partition, offset)``: the Python call's result
    beside the record."""
    from pyflink.common import Types

    from onceflow.streams import json_record_type

    record = json_record_type()
    return Types.ROW_NAMED(
        ["c", *JSON_FIELDS], [_row_type(change_fields), *record.get_field_types()]
    )


def _fault_condition(uid: str) -> str:
    """The failure injection at ``KEY@VERSION``, when armed (a test hook)."""
    faults = armed_faults(uid)
    if not faults.points or faults.marker_dir is None:
        return ""
    armed = sql_literal("\n".join(sorted(faults.points)))
    at = "`c`.`k` || '@' || CAST(`c`.`version` AS STRING)"
    return f" AND {FAIL_ONCE}({at}, {armed}, {sql_literal(faults.marker_dir)})"

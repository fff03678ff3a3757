"""``versioned_update(stream, ...)``: the versioned update operator for any PyFlink stream.

Per entity key, each change is applied once and in version order (``newer_wins``
or ``compare_and_set``); stale and conflicting changes come out on their own
streams, never silently dropped. The operator keys the stream itself:

- JSON change events (:func:`onceflow.runtime.kafka_source.read_kafka_json`,
  or records dedup passed): ``{"key", "version", "op", "payload",
  "expected_version"}`` (paths configurable); malformed events are dead letters
  with their source position. The JVM path (the default): parsed by one Python
  call per record, keyed by entity key and decided by a Java keyed function
  (:mod:`onceflow.operators.versioned.jvm`); the Python path (``path="python"``):
  keyed in the JVM by ``JSON_VALUE`` of the key, parsed and decided by one keyed
  Python operator. Both write the same outputs (``tests/it/test_versioned_paths.py``).
- Rows of the user's declared type: keyed in the JVM by the ``key_field``
  column; the whole row is the payload.
- Any other objects (dicts, ...): keyed in Python by the ``key_field`` item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onceflow.errors import OnceflowError
from onceflow.operators.paths import choose_path
from onceflow.operators.records import DEAD_LETTER_MAX_BYTES
from onceflow.operators.versioned.core import MODES, NEWER_WINS, ChangeSchema
from onceflow.streams import (
    JSON_FIELDS,
    field_names,
    is_json_stream,
    kafka_record_type,
    key_in_jvm,
    side_output,
)

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, KeyedStream

__all__ = ["Versioned", "versioned_update"]


@dataclass(frozen=True)
class Versioned:
    """The outputs of :func:`versioned_update`.

    :param applied: applied changes. JSON input: ``Row(key, v)`` (the payload as
        canonical JSON; None for a delete: a tombstone for a compacted topic); a
        user's records: as they came in.
    :param stale: ``Row(key, v)``: changes older than the stored version, with a report.
    :param conflicts: ``Row(key, v)``: the same version with other content, or a
        failed compare-and-set, with a report.
    :param dead_letters: ``Row(key, v)``: malformed changes with the reason.
    :param changes: one row per applied change
        (:data:`onceflow.operators.versioned.flink.CHANGES_SCHEMA`), for a Parquet log.
    """

    applied: DataStream
    stale: DataStream
    conflicts: DataStream
    dead_letters: DataStream
    changes: DataStream


def versioned_update(
    stream: DataStream,
    *,
    key_field: str = "key",
    version_field: str = "version",
    op_field: str | None = "op",
    payload_field: str = "payload",
    expected_version_field: str | None = "expected_version",
    mode: str = NEWER_WINS,
    ttl_ms: int | None = None,
    max_record_bytes: int = 512 * 1024,
    dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    uid: str = "versioned-update",
    path: str = "auto",
) -> Versioned:
    """Apply each entity's changes once, in version order, exactly-once.

    :param stream: JSON change events with positions, a user's Rows, or objects.
    :param key_field: the entity key (a dotted path in JSON, a column, an item).
    :param version_field: the version: an integer in ``[0, 2**63-1]``.
    :param op_field: ``upsert`` or ``delete`` (absent or None: every change is an upsert).
    :param payload_field: JSON input only: the entity's content (a user's record
        is its own payload).
    :param expected_version_field: for ``compare_and_set``: the version the
        writer saw (absent: a create).
    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param ttl_ms: processing-time TTL of a key's state after its last applied
        write, None to keep it forever; it must exceed the input's
        out-of-orderness, or a late change may resurrect or roll back an entity.
    :param max_record_bytes: larger JSON values are dead letters (``oversize``).
    :param dead_letter_max_bytes: the largest dead letter.
    :param uid: the operator's uid and name; keep it stable across deployments.
        The JVM path's operators are ``<uid>-jvm-...``: a savepoint of one path does
        not restore into the other.
    :param path: ``auto`` (default): the JVM path for JSON change events (one Python
        call per record parses them, the state and the decision are Java's), else
        the Python path; ``jvm`` insists (an error for a user's records);
        ``python`` forces the Python path (one keyed Python call per record).
    :raises OnceflowError: on settings that cannot work, with what to change.
    """
    from onceflow.operators.versioned.flink import VersionedOutputs

    if mode not in MODES:
        raise OnceflowError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if ttl_ms is not None and ttl_ms <= 0:
        raise OnceflowError("ttl_ms must be positive, or None to keep every key forever")
    if max_record_bytes <= 0:
        raise OnceflowError("max_record_bytes must be positive")
    json_input = is_json_stream(stream)
    chosen = choose_path(
        "versioned_update", path, uid, jvm_possible=json_input, jvm_needs="JSON change events"
    )
    if chosen == "jvm":
        from onceflow.operators.versioned.jvm import versioned_json_in_jvm

        schema = _schema(key_field, version_field, op_field, payload_field, expected_version_field)
        return Versioned(
            *versioned_json_in_jvm(
                stream,
                schema,
                mode=mode,
                ttl_ms=ttl_ms,
                max_record_bytes=max_record_bytes,
                dead_letter_max_bytes=dead_letter_max_bytes,
                uid=uid,
            )  # fmt: skip
        )
    outputs = VersionedOutputs(uid)
    if json_input:
        schema = _schema(key_field, version_field, op_field, payload_field, expected_version_field)
        keyed, function = _json_plan(
            stream, schema, mode, ttl_ms, outputs, max_record_bytes, uid, dead_letter_max_bytes
        )
        applied_type = kafka_record_type()
    else:
        keyed, function = _record_plan(
            stream, key_field, version_field, op_field, expected_version_field, mode, ttl_ms,
            outputs, uid, dead_letter_max_bytes,
        )  # fmt: skip
        applied_type = stream.get_type()
    applied = keyed.process(function, applied_type).name(uid).uid(uid)
    return Versioned(
        applied=applied,
        stale=side_output(applied, outputs.stale),
        conflicts=side_output(applied, outputs.conflicts),
        dead_letters=side_output(applied, outputs.dead_letters),
        changes=side_output(applied, outputs.changes),
    )


def _schema(
    key: str, version: str, op: str | None, payload: str, expected: str | None
) -> ChangeSchema:
    try:
        return ChangeSchema(
            key=key,
            version=version,
            # A path no record has: absent reads as "upsert" / "create".
            op=op or "onceflow_no_op",
            payload=payload,
            expected_version=expected or "onceflow_no_expected_version",
        )
    except ValueError as exc:
        raise OnceflowError(str(exc)) from exc


def _json_plan(
    stream: DataStream,
    schema: ChangeSchema,
    mode: str,
    ttl_ms: int | None,
    outputs: Any,
    max_record_bytes: int,
    uid: str,
    dead_letter_max_bytes: int,
) -> tuple[KeyedStream, Any]:
    from onceflow.operators.versioned.flink import VersionedUpdateFunction, sql_key_expression

    try:
        key_sql = sql_key_expression(schema)
    except ValueError as exc:
        raise OnceflowError(str(exc)) from exc
    keyed = key_in_jvm(stream, key_sql, uid=f"{uid}-key", fields=JSON_FIELDS)
    function = VersionedUpdateFunction(
        mode, ttl_ms, outputs, max_record_bytes, schema, uid=uid,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )  # fmt: skip
    return keyed, function


def _record_plan(
    stream: DataStream,
    key_field: str,
    version_field: str,
    op_field: str | None,
    expected_version_field: str | None,
    mode: str,
    ttl_ms: int | None,
    outputs: Any,
    uid: str,
    dead_letter_max_bytes: int,
) -> tuple[KeyedStream, Any]:
    from onceflow.operators.keying import FieldOf, key_records, key_rows_by_column
    from onceflow.operators.versioned.flink import RecordFields, RecordVersionedFunction

    names = field_names(stream) or ()
    fields = RecordFields(
        key_field,
        version_field,
        op_field if not names or op_field in names else None,
        expected_version_field if not names or expected_version_field in names else None,
    )
    if not names:
        keyed = key_records(stream, FieldOf(key_field))
    elif version_field not in names:
        raise OnceflowError(f"{version_field!r} is not a field of the stream's rows {list(names)}")
    else:
        keyed = key_rows_by_column(stream, key_field, uid=uid)
    function = RecordVersionedFunction(
        mode, ttl_ms, outputs, fields, names=names, uid=uid,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )  # fmt: skip
    return keyed, function

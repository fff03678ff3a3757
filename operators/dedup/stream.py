"""``dedup(stream, ...)``: the dedup operator for any PyFlink stream.

It takes the stream as the user has it and keys it itself, so the key contract
(the state of a key only ever sees records of that identity) cannot be broken:

- JSON records from :func:`onceflow.runtime.kafka_source.read_kafka_json` (or
  anything of :func:`onceflow.streams.json_record_type`): the **JVM path** by
  default (:mod:`onceflow.operators.dedup.jvm`): Flink's own deduplication keeps
  the first of each identity, computed by onceflow's Java scanner for an id field
  (only the records it refused cross into Python, for their dead letters) or by
  one Python call per record for a content fingerprint. With ``path="python"``
  the **Python path**: one keyed Python call per record parses it and keeps the
  state (keyed in the JVM by the same scanner, or in Python for a fingerprint).
  Both paths write the same passed records and byte-identical dead letters
  (reason, source position).
- Rows of the user's declared type: keyed in the JVM by the ``id_field``
  column; the Python call only reads and writes the state.
- Any other objects (dicts, ...), or with ``key=`` a function: keyed in Python
  (one more Python call per record).

Results come back as separate streams: :attr:`Deduped.passed` (first
occurrences) and :attr:`Deduped.dead_letters`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from onceflow.errors import OnceflowError
from onceflow.operators.dedup.identity import IdentitySpec
from onceflow.operators.paths import PATHS, choose_path
from onceflow.operators.records import DEAD_LETTER_MAX_BYTES, stable_hash
from onceflow.streams import (
    JSON_FIELDS,
    field_names,
    is_json_stream,
    kafka_record_type,
    key_in_jvm,
    keyed_json_record_type,
    side_output,
)

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, KeyedStream

__all__ = ["DAY_MS", "PATHS", "Deduped", "dedup"]

log = logging.getLogger(__name__)

DAY_MS: Final = 24 * 3600 * 1000

_JVM_NEEDS: Final = "JSON records (by id_field or fingerprint)"


@dataclass(frozen=True)
class Deduped:
    """The outputs of :func:`dedup`.

    :param passed: first occurrences. JSON input: ``Row(key, v, topic,
        partition, offset)`` (:func:`onceflow.streams.keyed_json_record_type`,
        ``key`` the id or fingerprint); a user's records: as they came in.
    :param dead_letters: ``Row(key, v)``: the dead-letter document (reason,
        detail, the original) keyed by the source position (null for a user's
        records).
    """

    passed: DataStream
    dead_letters: DataStream


class _Fingerprint:
    """A user's record's content hash (a Row's fields, a dict, or ``fields`` of it)."""

    def __init__(self, fields: tuple[str, ...] | None) -> None:
        self.fields = fields

    def __call__(self, record: Any) -> str:
        value = record.as_dict(recursive=True) if hasattr(record, "as_dict") else record
        if self.fields is not None:
            value = {name: value.get(name) for name in self.fields}
        return stable_hash(value)


def dedup(
    stream: DataStream,
    *,
    id_field: str | None = "id",
    fingerprint: bool | Sequence[str] = False,
    key: Callable[[Any], Any] | None = None,
    ttl_ms: int | None = DAY_MS,
    max_record_bytes: int = 512 * 1024,
    dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    uid: str = "dedup",
    path: str = "auto",
) -> Deduped:
    """Keep the first occurrence of each identity within ``ttl_ms``, exactly-once.

    :param stream: JSON records with positions, a user's Rows, or any objects.
    :param id_field: the id: a dotted path in JSON records, a column of Rows, a
        key or attribute of other objects.
    :param fingerprint: identify by a hash of the content instead (True: the whole
        record; a sequence: those fields).
    :param key: identify a user's record by ``key(record)`` (keyed in Python).
    :param ttl_ms: the horizon in processing-time ms (Flink state TTL); None
        remembers every identity forever.
    :param max_record_bytes: larger JSON values are dead letters (``oversize``).
    :param dead_letter_max_bytes: the largest dead letter (a larger one keeps a
        prefix of its input).
    :param uid: the operator's uid and name; keep it stable across deployments
        (savepoints map the state by it). The JVM path's operators are
        ``<uid>-jvm-...``: a savepoint of one path does not restore into the other.
    :param path: ``auto`` (default): the JVM path for JSON records (by an id field or
        a fingerprint), else the Python path; ``jvm`` insists (an error for a key
        function or a user's records); ``python`` forces the Python path. The
        choice is logged and names the operators in the plan.
    :raises OnceflowError: on settings that cannot work, with what to change.
    """
    from pyflink.datastream import OutputTag

    if ttl_ms is not None and ttl_ms <= 0:
        raise OnceflowError("ttl_ms must be positive, or None to remember every id forever")
    if max_record_bytes <= 0:
        raise OnceflowError("max_record_bytes must be positive")
    tag = OutputTag(f"{uid}-dead-letters", kafka_record_type())
    if is_json_stream(stream):
        if key is not None:
            raise OnceflowError(
                "dedup of JSON records identifies them by id_field or fingerprint; a key "
                "function needs the user's own records (map the JSON to them first)"
            )
        identity = _identity(id_field, fingerprint)
        if choose_path("dedup", path, uid, jvm_needs=_JVM_NEEDS, jvm_possible=True) == "jvm":
            from onceflow.operators.dedup.jvm import dedup_json_in_jvm

            passed, dead_letters = dedup_json_in_jvm(
                stream, identity, max_record_bytes=max_record_bytes, ttl_ms=ttl_ms, uid=uid,
                dead_letter_max_bytes=dead_letter_max_bytes,
            )  # fmt: skip
            return Deduped(passed, dead_letters)
        keyed, function = _dedup_json(
            stream, identity, max_record_bytes, ttl_ms, tag, uid, dead_letter_max_bytes,
        )  # fmt: skip
        out_type = keyed_json_record_type()
    else:
        choose_path("dedup", path, uid, jvm_needs=_JVM_NEEDS, jvm_possible=False)
        keyed, function = _dedup_records(
            stream, id_field, fingerprint, key, ttl_ms, tag, uid, dead_letter_max_bytes
        )
        out_type = stream.get_type()
    passed = keyed.process(function, out_type).name(uid).uid(uid)
    return Deduped(passed, side_output(passed, tag))


def _identity(id_field: str | None, fingerprint: bool | Sequence[str]) -> IdentitySpec:
    try:
        if fingerprint:
            fields = None if fingerprint is True else tuple(fingerprint)
            return IdentitySpec.by_fingerprint(fields)
        if id_field is None:
            raise OnceflowError("set id_field, fingerprint or key")
        return IdentitySpec.by_id(id_field)
    except ValueError as exc:
        raise OnceflowError(str(exc)) from exc


def _dedup_json(
    stream: DataStream,
    identity: IdentitySpec,
    max_record_bytes: int,
    ttl_ms: int | None,
    tag: Any,
    uid: str,
    dead_letter_max_bytes: int,
) -> tuple[KeyedStream, Any]:
    from pyflink.common import Types

    from onceflow.operators.dedup.flink import DedupFunction, FingerprintKey, sql_key_expression
    from onceflow.udf import attach_udf_jar, register_udfs

    key_sql = None
    if identity.id_field is not None:
        key_sql = sql_key_expression(identity.id_field, max_record_bytes)
        attach_udf_jar(stream.get_execution_environment())
        keyed = key_in_jvm(
            stream, key_sql, uid=f"{uid}-key", fields=JSON_FIELDS, prepare=register_udfs
        )
    else:
        keyed = stream.key_by(FingerprintKey(identity, max_record_bytes), key_type=Types.STRING())
    function = DedupFunction(
        identity, max_record_bytes, ttl_ms, tag, uid=uid, jvm_keyed=key_sql is not None,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )  # fmt: skip
    return keyed, function


def _dedup_records(
    stream: DataStream,
    id_field: str | None,
    fingerprint: bool | Sequence[str],
    key: Callable[[Any], Any] | None,
    ttl_ms: int | None,
    tag: Any,
    uid: str,
    dead_letter_max_bytes: int,
) -> tuple[KeyedStream, Any]:
    from onceflow.operators.dedup.flink import RecordDedupFunction
    from onceflow.operators.keying import FieldOf, key_records, key_rows_by_column

    names = field_names(stream)
    if key is None and fingerprint:
        fields = None if fingerprint is True else tuple(fingerprint)
        key, what = _Fingerprint(fields), "the fingerprint"
    elif key is not None:
        what = "the key function"
    elif id_field is None:
        raise OnceflowError("set id_field, fingerprint or key")
    elif names is not None:
        keyed = key_rows_by_column(stream, id_field, uid=uid)
        function = RecordDedupFunction(
            ttl_ms, tag, what=f"field {id_field!r}", names=names, uid=uid, jvm_keyed=True,
            dead_letter_max_bytes=dead_letter_max_bytes,
        )  # fmt: skip
        return keyed, function
    else:
        key, what = FieldOf(id_field), f"field {id_field!r}"
    function = RecordDedupFunction(
        ttl_ms, tag, what=what, names=names or (), uid=uid, jvm_keyed=False,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )  # fmt: skip
    return key_records(stream, key), function

"""PyFlink adapters of the versioned-update core.

The Python path (``versioned_update(..., path="python")``, and the only path of a
user's Rows or objects): one keyed Python operator per record, below. The JVM
path's Python part is :class:`ChangeFunction`, the same parse and validation as
a SQL function, one call per record; the decision is then Java's
(:mod:`onceflow.operators.versioned.jvm`).

On the Python path:

The stream arrives keyed by entity key, computed in the JVM by the source query
(:func:`sql_key_expression`: ``JSON_VALUE`` of the key field, so ``42`` and
``"42"`` are one key, as they are one entity for the core; lone surrogates are
replaced so that the key can cross into Python at all). The key rides in the
record too, so the operator checks it without a call back into the JVM. Then
:class:`VersionedUpdateFunction` does all the Python work in one call per
record: parse and validate the raw Kafka value, and apply it in version order.
(Measured on this project's machine, each extra Python operator in front of the
keyed one costs about half the throughput: see operators/dedup/flink.py.)

- A malformed record (not JSON, missing key or version, non-integer version,
  bad op...) becomes a dead letter (reason + original bytes + source
  topic/partition/offset) on the dead-letter output instead of failing the job; so does
  a record the JVM keyed by another value than the parsed key
  (:data:`~onceflow.operators.records.AMBIGUOUS_KEY`: duplicate ``key`` members, say),
  and a key that is not Unicode text (:data:`~onceflow.operators.records.INVALID_UNICODE`).
  Dead letters touch no state.
- Per entity key, a ``ValueState`` of the core's state tuple ``(version,
  payload_hash, deleted, written_ms)`` (``Types.TUPLE([LONG, STRING, BOOLEAN,
  LONG])``, optional state TTL); every decision is
  :class:`~onceflow.operators.versioned.core.VersionedUpdateCore`'s.

Outputs (:class:`VersionedOutputs`): the main stream holds the applied changes:
for JSON input ``Row(key, v)`` (key = entity key, value = the payload as
canonical JSON, or None for an applied delete: a tombstone in a compacted
topic), for a user's records the records as they came in. Side outputs:

- ``stale`` / ``conflicts``: ``Row(key, v)``, the value a JSON report with the
  event, the stored version and the reason
  (:func:`onceflow.operators.versioned.output.outcome_report`);
- ``dead_letters``: ``Row(key, v)``, keyed by source position;
- ``changes``: one typed row per applied event (:data:`CHANGES_SCHEMA`), for
  the Parquet log of applied changes.

Repeats (re-deliveries of the applied version) are dropped and counted.

Delivery: the state is checkpointed with the source offsets, so after a
failover the replayed records meet the state of the checkpoint and make the
same decisions (with TTL, expiry is judged at the replay's processing time);
with transactional sinks the outputs are exactly-once. An exception (corrupt
state, an injected failure) fails the task and Flink restores the last
checkpoint.

Metrics (operator scope): ``applied``, ``stale``, ``conflicts``, ``repeats``,
``dlq_records``, ``expired_state`` (decisions made after the TTL dropped a
key's state: the resurrection risk of the core's docs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.table.udf import ScalarFunction

from onceflow.operators.faults import armed_faults
from onceflow.operators.records import (
    AMBIGUOUS_KEY,
    DEAD_LETTER_MAX_BYTES,
    Rejected,
    dead_letter_record,
    parse_object,
    record_dead_letter,
    sql_json_path,
    sql_unicode_safe,
)
from onceflow.operators.state import FlinkValueStore, value_state_descriptor
from onceflow.operators.versioned.core import (
    APPLIED,
    CONFLICT,
    REPEAT,
    STALE,
    ChangeEvent,
    ChangeSchema,
    StateTuple,
    VersionedUpdateCore,
    parse_change,
)
from onceflow.operators.versioned.output import (
    CHANGE_COLUMNS,
    applied_value,
    change_row,
    encoded_change,
    outcome_report,
)
from onceflow.schema import RecordSchema

__all__ = [
    "CHANGES_SCHEMA",
    "CHANGE_FIELDS",
    "ChangeFunction",
    "RecordVersionedFunction",
    "VersionedOutputs",
    "VersionedUpdateFunction",
    "parse_event",
    "sql_key_expression",
]

log = logging.getLogger(__name__)

CHANGES_SCHEMA: Final = RecordSchema.of(*CHANGE_COLUMNS)


def sql_key_expression(schema: ChangeSchema | None = None, column: str = "v") -> str:
    """The SQL expression of a record's Flink key: its key field's value as text, or ``''``.

    ``JSON_VALUE`` yields a string field unquoted (escapes decoded) and an
    integer in decimal, the same text as the core's ``str(key)``; anything else
    (absent, null, an object, not JSON) yields NULL, made ``''``: those records
    are dead letters and touch no state.

    :raises ValueError: when the key path cannot be written as a SQL/JSON path.
    """
    key_path = (schema or ChangeSchema()).key
    path = sql_json_path(key_path)
    if path is None:
        raise ValueError(
            f"key field {key_path!r} cannot be read in SQL: use names of letters, digits, "
            "'_' and '-' separated by dots"
        )
    text = f"JSON_VALUE(CAST(`{column}` AS STRING), '{path}')"
    return f"COALESCE({sql_unicode_safe(text)}, '')"


class VersionedOutputs:
    """The side outputs of a versioned update operator ``uid``: dead letters, stale
    and conflicting events (``Row(key, v)``) and applied changes (:data:`CHANGES_SCHEMA`)."""

    def __init__(self, uid: str) -> None:
        from onceflow.streams import kafka_record_type

        self.dead_letters = OutputTag(f"{uid}-dead-letters", kafka_record_type())
        self.stale = OutputTag(f"{uid}-stale", kafka_record_type())
        self.conflicts = OutputTag(f"{uid}-conflicts", kafka_record_type())
        self.changes = OutputTag(f"{uid}-changes", CHANGES_SCHEMA.type_info())


class _VersionedBase(KeyedProcessFunction):
    """State, metrics, fault points and the decision shared by both input kinds."""

    def __init__(
        self,
        mode: str,
        ttl_ms: int | None,
        outputs: VersionedOutputs,
        uid: str,
        dead_letter_max_bytes: int,
    ) -> None:
        self.mode = mode
        self.ttl_ms = ttl_ms
        self.outputs = outputs
        self.uid = uid
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.core = VersionedUpdateCore(mode, ttl_ms)
        self.faults = armed_faults(uid)

    def open(self, runtime_context: RuntimeContext) -> None:
        # With a TTL, only an applied write refreshes a key's clock; expired reads as absent.
        descriptor = value_state_descriptor(
            "version_state",
            Types.TUPLE([Types.LONG(), Types.STRING(), Types.BOOLEAN(), Types.LONG()]),
            self.ttl_ms,
        )
        self.store: FlinkValueStore[StateTuple] = FlinkValueStore(
            runtime_context.get_state(descriptor), tuple
        )
        metrics = runtime_context.get_metrics_group()
        self.counters = {
            APPLIED: metrics.counter("applied"),
            STALE: metrics.counter("stale"),
            CONFLICT: metrics.counter("conflicts"),
            REPEAT: metrics.counter("repeats"),
        }
        self.dlq = metrics.counter("dlq_records")
        self.expired = metrics.counter("expired_state")

    def decide(
        self,
        event: ChangeEvent,
        applied: Any,
        topic: str | None,
        partition: int | None,
        offset: int | None,
    ) -> Any:
        """Apply ``event``: yield ``applied`` and its change row, or the report."""
        if self.faults.points:
            self.faults.maybe_fail(f"{event.key}@{event.version}")
        # Processing time read here, not through the timer service: one JVM call less
        # per record; Flink's state TTL uses the same wall clock.
        now = int(time.time() * 1000)
        outcome = self.core.apply(self.store, event, now)
        self.counters[outcome.kind].inc()
        if outcome.expired:
            self.expired.inc()
        if outcome.kind == APPLIED:
            yield applied
            yield self.outputs.changes, Row(*change_row(outcome, topic, partition, offset, now))
        elif outcome.kind in (STALE, CONFLICT):
            tag = self.outputs.stale if outcome.kind == STALE else self.outputs.conflicts
            yield tag, Row(event.key, outcome_report(outcome, topic, partition, offset))

    def reject(self, letter: tuple[str | None, bytes]) -> Any:
        self.dlq.inc()
        return self.outputs.dead_letters, Row(*letter)


class VersionedUpdateFunction(_VersionedBase):
    """JSON change events keyed by entity key: parse, then apply each once, in version order.

    Input: ``Row(onceflow_key, v, topic, partition, offset)`` keyed by
    :func:`sql_key_expression` (the first field is that Flink key). Main output:
    applied changes as ``Row(key, v)`` (the payload as canonical JSON, or None
    for a delete: a tombstone); the rest to the tags of ``outputs``.

    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param ttl_ms: processing-time TTL of a key's state after its last applied
        write, or None to keep it forever. It must exceed the input's maximum
        out-of-orderness, or a late update may resurrect or roll back an entity.
    :param outputs: the side outputs.
    :param max_record_bytes: larger values are dead letters (``oversize``).
    :param schema: where the change fields live in a record (the stream must be
        keyed by the same key field).
    :param uid: the operator's uid (fault points of tests are armed per uid:
        :func:`~onceflow.operators.faults.arm_faults`, at ``KEY@VERSION``).
    :param dead_letter_max_bytes: the largest dead letter written (a larger one
        keeps a prefix of the input: see :func:`~onceflow.operators.records.dead_letter`).
    """

    def __init__(
        self,
        mode: str,
        ttl_ms: int | None,
        outputs: VersionedOutputs,
        max_record_bytes: int,
        schema: ChangeSchema | None = None,
        *,
        uid: str = "versioned-update",
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    ) -> None:
        super().__init__(mode, ttl_ms, outputs, uid, dead_letter_max_bytes)
        self.max_record_bytes = max_record_bytes
        self.schema = schema or ChangeSchema()

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Any:
        flink_key = value[0]
        raw, topic, partition, offset = value[-4:]
        event = parse_event(raw, flink_key, self.schema, self.max_record_bytes)
        if isinstance(event, Rejected):
            key, letter = dead_letter_record(
                raw, event, topic, partition, offset, self.dead_letter_max_bytes
            )
            yield self.reject((key, letter))
            return
        yield from self.decide(
            event, Row(event.key, applied_value(event)), topic, partition, offset
        )


def parse_event(
    raw: bytes | None, flink_key: str, schema: ChangeSchema, max_record_bytes: int
) -> ChangeEvent | Rejected:
    """The change in ``raw``, or why it is a dead letter. Never raises on input.

    ``flink_key`` is the key the JVM read (:func:`sql_key_expression`): a record
    Python parses with another key (duplicate members, say) is
    :data:`~onceflow.operators.records.AMBIGUOUS_KEY`.
    """
    parsed = parse_object(raw, max_record_bytes)
    if isinstance(parsed, Rejected):
        return parsed
    event = parse_change(parsed.value, schema)
    if isinstance(event, Rejected):
        return event
    if event.key != flink_key:
        # The state of flink_key must only ever see this entity's changes.
        return Rejected(
            AMBIGUOUS_KEY,
            f"field {schema.key!r} parsed as {event.key[:200]!r} but Flink keyed the "
            f"record by {flink_key[:200]!r} (duplicate member names?)",
        )
    return event


CHANGE_FIELDS: Final = RecordSchema.of(
    ("k", "STRING"),
    ("version", "BIGINT"),
    ("op", "STRING"),
    ("payload", "STRING"),
    ("content", "STRING"),
    ("expected", "BIGINT"),
    ("key_json", "STRING"),
    ("dl_key", "STRING"),
    ("dl", "BYTES"),
)
"""The columns of :class:`ChangeFunction`'s result (all nullable)."""


class ChangeFunction(ScalarFunction):
    """A SQL function: a raw change event parsed, validated and encoded by the Python
    path's own code, one call per record, for the JVM path's decision
    (``dev.onceflow.udf.VersionedDecision``).

    ``eval(v, flink_key, topic, partition, offset)`` returns a row of
    :data:`CHANGE_FIELDS`: for a valid event its key, version, op and
    :func:`~onceflow.operators.versioned.output.encoded_change`'s payload text,
    content hash and key JSON; for a dead letter only ``dl_key`` and ``dl``, what
    :class:`VersionedUpdateFunction` writes for it (``k`` NULL). Fault points armed
    for ``uid`` fail here (a test hook, see :func:`~onceflow.operators.faults.arm_faults`).
    """

    def __init__(
        self,
        schema: ChangeSchema,
        max_record_bytes: int,
        dead_letter_max_bytes: int,
        *,
        uid: str = "versioned-update",
    ) -> None:
        self.schema = schema
        self.max_record_bytes = max_record_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.faults = armed_faults(uid)

    def open(self, function_context: Any) -> None:
        self.dlq = function_context.get_metric_group().counter("dlq_records")

    def eval(
        self, raw: bytes | None, flink_key: str, topic: str, partition: int, offset: int
    ) -> Row:
        event = parse_event(raw, flink_key, self.schema, self.max_record_bytes)
        if isinstance(event, Rejected):
            self.dlq.inc()
            key, letter = dead_letter_record(
                raw, event, topic, partition, offset, self.dead_letter_max_bytes
            )
            return Row(None, None, None, None, None, None, None, key, letter)
        if self.faults.points:  # a test hook: fail once at KEY@VERSION, as the Python path
            self.faults.maybe_fail(f"{event.key}@{event.version}")
        text, content, key_json = encoded_change(event)
        return Row(
            event.key, event.version, event.op, text, content, event.expected_version, key_json,
            None, None,
        )  # fmt: skip


@dataclass(frozen=True)
class RecordFields:
    """Where a user's record holds its change: field names (``op`` and
    ``expected_version`` optional: None means every record is an upsert / a create)."""

    key: str
    version: str
    op: str | None = None
    expected_version: str | None = None


class RecordVersionedFunction(_VersionedBase):
    """A user's records keyed by entity key: apply each once, in version order.

    Input: with ``names`` (Rows keyed in the JVM) ``Row(onceflow_key, *fields)``;
    else the records themselves (dicts or objects), keyed in Python by the key
    field. The whole record is the payload (a conflict is the same version with
    other content). Main output: applied records as they came in.
    """

    def __init__(
        self,
        mode: str,
        ttl_ms: int | None,
        outputs: VersionedOutputs,
        fields: RecordFields,
        *,
        names: tuple[str, ...] = (),
        uid: str = "versioned-update",
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    ) -> None:
        super().__init__(mode, ttl_ms, outputs, uid, dead_letter_max_bytes)
        self.fields = fields
        self.names = names

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        if self.names:
            record: Any = Row(*value[1:])
            payload = {
                name: _json_value(item) for name, item in zip(self.names, value[1:], strict=True)
            }
        else:
            record = value
            found = record if isinstance(record, dict) else vars(record)
            payload = {name: _json_value(item) for name, item in found.items()}
        fields = self.fields
        change = {
            "key": payload.get(fields.key),
            "version": payload.get(fields.version),
            "op": payload.get(fields.op) if fields.op else None,
            "payload": payload,
            "expected_version": payload.get(fields.expected_version)
            if fields.expected_version
            else None,
        }
        event = parse_change(change)
        if isinstance(event, Rejected):
            letter = record_dead_letter(payload, event, self.dead_letter_max_bytes)
            yield self.reject((None, letter))
            return
        yield from self.decide(event, record, None, None, None)


_JSON_TYPES: Final = (str, int, float, bool, type(None), dict, list, tuple)


def _json_value(value: Any) -> Any:
    """A record's field as JSON can hold it (for the content hash): else its ``str``."""
    return value if isinstance(value, _JSON_TYPES) else str(value)

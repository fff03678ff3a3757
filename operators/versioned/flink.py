"""PyFlink adapter of the versioned-update core: one keyed Python operator per record.

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
  topic/partition/offset) routed to ``dlq`` instead of failing the job; so does
  a record the JVM keyed by another value than the parsed key
  (:data:`~onceflow.operators.records.AMBIGUOUS_KEY`: duplicate ``key`` members, say),
  and a key that is not Unicode text (:data:`~onceflow.operators.records.INVALID_UNICODE`).
  Dead letters touch no state.
- Per entity key, a ``ValueState`` of the core's state tuple ``(version,
  payload_hash, deleted, written_ms)`` (``Types.TUPLE([LONG, STRING, BOOLEAN,
  LONG])``, optional state TTL); every decision is
  :class:`~onceflow.operators.versioned.core.VersionedUpdateCore`'s.

Outputs of :class:`VersionedUpdateFunction`, main stream ``Row(route, k, v)``
(:func:`onceflow.runtime.pipeline.routed_type`):

- ``applied``: key = entity key (UTF-8), value = the payload as canonical JSON,
  or None for an applied delete: a tombstone in a compacted topic.
- ``stale`` / ``conflict``: key = entity key, value = a JSON report with the
  event, the stored version and the reason
  (:func:`onceflow.operators.versioned.output.outcome_report`).
- ``dlq``: dead letters, keyed by source position.
- repeats (re-deliveries of the applied version) are dropped and counted.

Side output :func:`changes_tag`: one typed row per applied event
(:data:`CHANGES_SCHEMA`) for the Parquet log of applied changes.

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
from typing import Any, Final

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext

from onceflow.operators.faults import inject_failure_once
from onceflow.operators.records import (
    AMBIGUOUS_KEY,
    DEAD_LETTER_MAX_BYTES,
    Rejected,
    dead_letter_record,
    parse_object,
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
    outcome_report,
)
from onceflow.schema import RecordSchema

__all__ = [
    "CHANGES_SCHEMA",
    "VersionedUpdateFunction",
    "changes_tag",
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


def changes_tag() -> OutputTag:
    """The side output of applied changes (rows of :data:`CHANGES_SCHEMA`)."""
    return OutputTag("applied-changes", CHANGES_SCHEMA.type_info())


class VersionedUpdateFunction(KeyedProcessFunction):
    """Keyed by entity key: parse, then apply each change once, in version order.

    Input: source rows ``Row(key, v, topic, partition, offset)`` keyed by
    :func:`sql_key_expression`, ``key`` being that Flink key (see the module doc
    for the outputs).

    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param ttl_ms: processing-time TTL of a key's state after its last applied
        write, or None to keep it forever. It must exceed the input's maximum
        out-of-orderness, or a late update may resurrect or roll back an entity.
    :param tag: the side output for applied-change rows (:func:`changes_tag`).
    :param max_record_bytes: larger values are dead letters (``oversize``).
    :param schema: where the change fields live in a record (the stream must be
        keyed by the same key field).
    :param fail_on_changes: ``KEY@VERSION`` of changes that raise
        :class:`~onceflow.operators.faults.InjectedFailure` the first time they arrive;
        replays after the restart pass. For recovery tests and the verifier.
    :param fail_marker_dir: folder of the ``<key>@<version>.fired`` marker that
        records the injected failure fired (the attempt number is not available
        to Python in thread mode), so it fires once even across restarts.
    :param dead_letter_max_bytes: the largest dead letter written (a larger one
        keeps a prefix of the input: see :func:`~onceflow.operators.records.dead_letter`).
    """

    def __init__(
        self,
        mode: str,
        ttl_ms: int | None,
        tag: OutputTag,
        max_record_bytes: int,
        schema: ChangeSchema | None = None,
        fail_on_changes: tuple[str, ...] = (),
        fail_marker_dir: str | None = None,
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    ) -> None:
        self.mode = mode
        self.ttl_ms = ttl_ms
        self.tag = tag
        self.max_record_bytes = max_record_bytes
        self.schema = schema or ChangeSchema()
        self.fail_on_changes = frozenset(fail_on_changes)
        self.fail_marker_dir = fail_marker_dir
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.core = VersionedUpdateCore(mode, ttl_ms)

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

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Any:
        flink_key, raw, topic, partition, offset = value
        event = self._event(raw, flink_key)
        if isinstance(event, Rejected):
            self.dlq.inc()
            yield Row(
                "dlq",
                *dead_letter_record(
                    raw, event, topic, partition, offset, self.dead_letter_max_bytes
                ),
            )
            return
        if self.fail_on_changes:
            change = f"{event.key}@{event.version}"
            if change in self.fail_on_changes:
                inject_failure_once(self.fail_marker_dir, change)
        # Processing time read here, not through the timer service: one JVM call less
        # per record; Flink's state TTL uses the same wall clock.
        now = int(time.time() * 1000)
        outcome = self.core.apply(self.store, event, now)
        self.counters[outcome.kind].inc()
        if outcome.expired:
            self.expired.inc()
        key_bytes = event.key.encode("utf-8")
        if outcome.kind == APPLIED:
            yield Row("applied", key_bytes, applied_value(event))
            yield self.tag, Row(*change_row(outcome, topic, partition, offset, now))
        elif outcome.kind in (STALE, CONFLICT):
            report = outcome_report(outcome, topic, partition, offset)
            yield Row(outcome.kind, key_bytes, report)

    def _event(self, raw: bytes | None, flink_key: str) -> ChangeEvent | Rejected:
        """The change in ``raw``, or why it is a dead letter. Never raises on input."""
        parsed = parse_object(raw, self.max_record_bytes)
        if isinstance(parsed, Rejected):
            return parsed
        event = parse_change(parsed.value, self.schema)
        if isinstance(event, Rejected):
            return event
        if event.key != flink_key:
            # The state of flink_key must only ever see this entity's changes.
            return Rejected(
                AMBIGUOUS_KEY,
                f"field {self.schema.key!r} parsed as {event.key[:200]!r} but Flink keyed the "
                f"record by {flink_key[:200]!r} (duplicate member names?)",
            )
        return event

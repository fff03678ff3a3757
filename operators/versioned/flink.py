"""PyFlink adapter of the versioned-update core: parse, key by entity, apply in version order.

Two functions, chained by the job as ``map(ParseChange) -> key_by(key) ->
process(VersionedUpdateFunction)``:

- :class:`ParseChange` parses each raw Kafka value into the fields of a
  :class:`~operators.versioned.core.ChangeEvent`; a malformed record (not
  JSON, missing key or version, non-integer version, bad op...) becomes a dead
  letter (reason + original bytes + source topic/partition/offset) routed to
  ``dlq`` instead of failing the job.
- :class:`VersionedUpdateFunction` holds, per entity key, a ``ValueState`` of
  the core's state tuple ``(version, payload_hash, deleted, written_ms)``
  (``Types.TUPLE([LONG, STRING, BOOLEAN, LONG])``, optional state TTL) and
  delegates every decision to :class:`~operators.versioned.core.VersionedUpdateCore`.

Outputs of :class:`VersionedUpdateFunction`, main stream ``Row(route, k, v)``
(:func:`onceflow.pipeline.routed_type`):

- ``applied``: key = entity key (UTF-8), value = the payload as canonical JSON,
  or None for an applied delete: a tombstone in a compacted topic.
- ``stale`` / ``conflict``: key = entity key, value = a JSON report with the
  event, the stored version and the reason
  (:func:`operators.versioned.output.outcome_report`).
- ``dlq``: dead letters from :class:`ParseChange`, passed through.
- repeats (re-deliveries of the applied version) are dropped and counted.

Side output :data:`CHANGES_TAG`: one typed row per applied event
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

import json
import logging
import re
from typing import Any, Final

from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from operators.faults import inject_failure_once
from operators.records import WRONG_TYPE, Rejected, dead_letter, parse_object
from operators.state import FlinkValueStore
from operators.versioned.core import (
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
from operators.versioned.output import (
    CHANGE_COLUMNS,
    applied_value,
    change_row,
    json_text,
    outcome_report,
)
from sinks.files import RecordSchema

__all__ = [
    "CHANGES_SCHEMA",
    "PARSED_NAMES",
    "ParseChange",
    "VersionedUpdateFunction",
    "changes_tag",
    "parsed_type",
]

log = logging.getLogger(__name__)

PARSED_NAMES: Final = [
    "key",
    "route",
    "version",
    "op",
    "payload",
    "expected_version",
    "topic",
    "partition",
    "offset",
    "k",
    "v",
]
CHANGES_SCHEMA: Final = RecordSchema.of(*CHANGE_COLUMNS)
# Dead letters of one subtask share this key: they touch no state.
DLQ_KEY: Final = ""
DLQ_TEXT_LIMIT: Final = 64 * 1024
CHANGE_ROUTE: Final = "change"


def parsed_type() -> Any:
    """Row type between :class:`ParseChange` and :class:`VersionedUpdateFunction`.

    ``key`` is the Flink key (the entity key; ``""`` for dead letters), ``route``
    is ``change`` or ``dlq``; a change carries its fields (``payload`` as JSON
    text) and source position, a dead letter its Kafka key and value in ``k``/``v``.
    """
    return Types.ROW_NAMED(
        PARSED_NAMES,
        [
            Types.STRING(),
            Types.STRING(),
            Types.LONG(),
            Types.STRING(),
            Types.STRING(),
            Types.LONG(),
            Types.STRING(),
            Types.INT(),
            Types.LONG(),
            Types.PRIMITIVE_ARRAY(Types.BYTE()),
            Types.PRIMITIVE_ARRAY(Types.BYTE()),
        ],
    )


def changes_tag() -> OutputTag:
    """The side output of applied changes (rows of :data:`CHANGES_SCHEMA`)."""
    return OutputTag("applied-changes", CHANGES_SCHEMA.type_info())


class ParseChange(MapFunction):
    """``Row(v, topic, partition, offset)`` -> a change or a dead letter (:func:`parsed_type`).

    Never raises on input: not JSON, not an object, oversize, a missing/null/
    empty key, a missing or non-integer version, an unknown op, an upsert
    without an object payload all become ``route="dlq"`` records.

    :param max_record_bytes: larger values are dead letters (``oversize``).
    :param schema: where the change fields live in a record.
    """

    def __init__(self, max_record_bytes: int, schema: ChangeSchema | None = None) -> None:
        self.max_record_bytes = max_record_bytes
        self.schema = schema or ChangeSchema()

    def map(self, value: Row) -> Row:
        raw, topic, partition, offset = value[0], value[1], value[2], value[3]
        parsed = parse_object(raw, self.max_record_bytes)
        if isinstance(parsed, Rejected):
            return self._dead(raw, parsed, topic, partition, offset)
        event = parse_change(parsed.value, self.schema)
        if isinstance(event, Rejected):
            return self._dead(raw, event, topic, partition, offset)
        try:
            event.key.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate from a "\ud800" escape: no Kafka key or Java string can hold it.
            why = Rejected(WRONG_TYPE, f"field {self.schema.key!r} is not valid Unicode text")
            return self._dead(raw, why, topic, partition, offset)
        payload = None if event.payload is None else json_text(event.payload)
        return Row(
            event.key,
            CHANGE_ROUTE,
            event.version,
            event.op,
            payload,
            event.expected_version,
            topic,
            partition,
            offset,
            None,
            None,
        )

    def _dead(self, raw: Any, why: Rejected, topic: str, partition: int, offset: int) -> Row:
        # The text copy doubles a dead letter's size; large ones keep only base64 so
        # they still fit the DLQ topic's max.message.bytes.
        small = raw is None or len(raw) <= DLQ_TEXT_LIMIT
        letter = dead_letter(
            raw, why.reason, why.detail, topic, partition, offset, include_text=small
        )
        key = f"{topic}/{partition}/{offset}".encode()
        return Row(DLQ_KEY, "dlq", None, None, None, None, topic, partition, offset, key, letter)


def _marker_name(key: str, version: int) -> str:
    # The marker is a file name: keep it to safe characters whatever the key holds.
    return re.sub(r"[^A-Za-z0-9._@-]", "_", f"{key}@{version}")[:200]


class VersionedUpdateFunction(KeyedProcessFunction):
    """Keyed by entity key: apply each change once, in version order (see the module doc).

    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param ttl_ms: processing-time TTL of a key's state after its last applied
        write, or None to keep it forever. It must exceed the input's maximum
        out-of-orderness, or a late update may resurrect or roll back an entity.
    :param tag: the side output for applied-change rows (:func:`changes_tag`).
    :param fail_on_key: raise :class:`~operators.faults.InjectedFailure` the
        first time a change of this key (and ``fail_on_version``, if set)
        arrives; replays after the restart pass. For recovery tests.
    :param fail_on_version: narrows ``fail_on_key`` to one version.
    :param fail_marker_dir: folder of the ``<key>@<version>.fired`` marker that
        records the injected failure fired (the attempt number is not available
        to Python in thread mode), so it fires once even across restarts.
    """

    def __init__(
        self,
        mode: str,
        ttl_ms: int | None,
        tag: OutputTag,
        fail_on_key: str | None = None,
        fail_on_version: int | None = None,
        fail_marker_dir: str | None = None,
    ) -> None:
        self.mode = mode
        self.ttl_ms = ttl_ms
        self.tag = tag
        self.fail_on_key = fail_on_key
        self.fail_on_version = fail_on_version
        self.fail_marker_dir = fail_marker_dir
        self.core = VersionedUpdateCore(mode, ttl_ms)

    def open(self, runtime_context: RuntimeContext) -> None:
        descriptor = ValueStateDescriptor(
            "version_state",
            Types.TUPLE([Types.LONG(), Types.STRING(), Types.BOOLEAN(), Types.LONG()]),
        )
        if self.ttl_ms is not None:
            # Mirrors the core: only an applied write refreshes the clock, expired is absent.
            ttl = (
                StateTtlConfig.new_builder(Time.milliseconds(self.ttl_ms))
                .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                .build()
            )
            descriptor.enable_time_to_live(ttl)
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
        key, route = value[0], value[1]
        if route == "dlq":
            self.dlq.inc()
            yield Row("dlq", value[9], value[10])
            return
        version, op, payload_text, expected = value[2], value[3], value[4], value[5]
        topic, partition, offset = value[6], value[7], value[8]
        if (
            self.fail_on_key is not None
            and key == self.fail_on_key
            and (self.fail_on_version is None or version == self.fail_on_version)
        ):
            inject_failure_once(self.fail_marker_dir, _marker_name(key, version))
        payload = None if payload_text is None else json.loads(payload_text)
        event = ChangeEvent(key, version, op, payload, expected)
        now = ctx.timer_service().current_processing_time()
        outcome = self.core.apply(self.store, event, now)
        self.counters[outcome.kind].inc()
        if outcome.expired:
            self.expired.inc()
        key_bytes = key.encode("utf-8")
        if outcome.kind == APPLIED:
            yield Row("applied", key_bytes, applied_value(event))
            yield self.tag, Row(*change_row(outcome, topic, partition, offset, now))
        elif outcome.kind in (STALE, CONFLICT):
            report = outcome_report(outcome, topic, partition, offset)
            yield Row(outcome.kind, key_bytes, report)

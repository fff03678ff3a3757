"""PyFlink adapter of the dedup core: identify, key by identity, keep the first.

Two functions, chained by the job as ``map(IdentifyRecord) -> key_by(identity) ->
process(DedupFunction)``:

- :class:`IdentifyRecord` parses each raw Kafka value and derives its identity;
  a malformed record becomes a dead letter (reason + original bytes + source
  topic/partition/offset) routed to ``dlq`` instead of failing the job.
- :class:`DedupFunction` holds, per identity, a ``ValueState[long]`` with the
  first-seen processing time (Flink state TTL when a horizon is set) and emits
  the first occurrence to ``out``; repeats within the horizon are dropped.

Delivery: the state is checkpointed with the source offsets, so after a
failover the replayed records meet the state of the checkpoint and make the
same decisions; with a transactional sink the output is exactly-once.

Metrics (operator scope): ``records_seen``, ``duplicates_dropped``,
``records_passed``, ``dlq_records``.
"""

from __future__ import annotations

import logging
from typing import Any

from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from operators.dedup.core import DedupCore
from operators.dedup.identity import IdentitySpec, identity_of
from operators.faults import inject_failure_once
from operators.records import Rejected, dead_letter, parse_object
from operators.state import FlinkValueStore

__all__ = [
    "IDENTIFIED_NAMES",
    "identified_type",
    "IdentifyRecord",
    "DedupFunction",
]

log = logging.getLogger(__name__)

IDENTIFIED_NAMES = ["ident", "route", "k", "v"]
# Dead letters of one subtask share this key: they touch no state.
DLQ_KEY = ""
DLQ_TEXT_LIMIT = 64 * 1024


def identified_type() -> Any:
    return Types.ROW_NAMED(
        IDENTIFIED_NAMES,
        [
            Types.STRING(),
            Types.STRING(),
            Types.PRIMITIVE_ARRAY(Types.BYTE()),
            Types.PRIMITIVE_ARRAY(Types.BYTE()),
        ],
    )


class IdentifyRecord(MapFunction):
    """``Row(v, topic, partition, offset)`` -> ``Row(ident, route, k, v)``.

    Never raises on input: not JSON, not an object, oversize, a missing, null,
    empty or wrongly typed id all become ``route="dlq"`` records.

    :param spec: how to identify a record (id field or content fingerprint).
    :param max_record_bytes: larger values are dead letters (``oversize``).
    """

    def __init__(self, spec: IdentitySpec, max_record_bytes: int) -> None:
        self.spec = spec
        self.max_record_bytes = max_record_bytes

    def map(self, value: Row) -> Row:
        raw, topic, partition, offset = value[0], value[1], value[2], value[3]
        parsed = parse_object(raw, self.max_record_bytes)
        if isinstance(parsed, Rejected):
            return self._dead(raw, parsed, topic, partition, offset)
        ident = identity_of(parsed.value, self.spec)
        if isinstance(ident, Rejected):
            return self._dead(raw, ident, topic, partition, offset)
        # Output key: the id itself (type tag stripped), or the fingerprint.
        return Row(ident, "out", ident[2:].encode("utf-8"), raw)

    def _dead(self, raw: Any, why: Rejected, topic: str, partition: int, offset: int) -> Row:
        # The text copy doubles a dead letter's size; large ones keep only base64 so
        # they still fit the DLQ topic's max.message.bytes.
        small = raw is None or len(raw) <= DLQ_TEXT_LIMIT
        letter = dead_letter(
            raw, why.reason, why.detail, topic, partition, offset, include_text=small
        )
        key = f"{topic}/{partition}/{offset}".encode()
        return Row(DLQ_KEY, "dlq", key, letter)


class DedupFunction(KeyedProcessFunction):
    """Keyed by identity: pass the first occurrence within ``ttl_ms``, drop repeats.

    :param ttl_ms: the horizon in processing-time ms; None remembers forever
        (state then grows with the number of distinct identities).
    :param fail_on_ids: raise :class:`~operators.faults.InjectedFailure` the first time one of these
        ids (raw ids) arrives; replays after the restart pass. For recovery tests
        and the verifier.
    :param fail_marker_dir: folder of marker files ``<id>.fired`` recording that
        a failure happened (the attempt number is not available to Python in
        thread mode), so each fires once even across restarts and redeploys.
    """

    def __init__(
        self,
        ttl_ms: int | None,
        fail_on_ids: tuple[str, ...] = (),
        fail_marker_dir: str | None = None,
    ) -> None:
        self.ttl_ms = ttl_ms
        self.fail_on_ids = frozenset(fail_on_ids)
        self.fail_marker_dir = fail_marker_dir
        self.core = DedupCore(ttl_ms)

    def open(self, runtime_context: RuntimeContext) -> None:
        descriptor = ValueStateDescriptor("first_seen_ms", Types.LONG())
        if self.ttl_ms is not None:
            ttl = (
                StateTtlConfig.new_builder(Time.milliseconds(self.ttl_ms))
                .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                .build()
            )
            descriptor.enable_time_to_live(ttl)
        self.store = FlinkValueStore(runtime_context.get_state(descriptor), int)
        metrics = runtime_context.get_metrics_group()
        self.seen = metrics.counter("records_seen")
        self.dropped = metrics.counter("duplicates_dropped")
        self.passed = metrics.counter("records_passed")
        self.dlq = metrics.counter("dlq_records")

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Any:
        ident, route, key, raw = value[0], value[1], value[2], value[3]
        self.seen.inc()
        if route == "dlq":
            self.dlq.inc()
            yield Row(route, key, raw)
            return
        if self.fail_on_ids and ident[2:] in self.fail_on_ids:
            inject_failure_once(self.fail_marker_dir, ident[2:])
        if self.core.process(self.store, ctx.timer_service().current_processing_time()):
            self.passed.inc()
            yield Row(route, key, raw)
        else:
            self.dropped.inc()

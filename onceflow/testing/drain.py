"""Draining a topic: every record of every partition, as a reader with a chosen
isolation level sees it (``read_committed`` by default).

Used by the output checks, the verifier, the benchmarks and the tests to read what
a job committed; it leaves no trace on the cluster (no group, no commits).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Literal

from kafka import KafkaConsumer, TopicPartition
from tqdm import tqdm

from onceflow.errors import OnceflowError

__all__ = ["ConsumedRecord", "DrainTimeout", "IsolationLevel", "TopicNotFound", "read_committed"]

log = logging.getLogger(__name__)

IsolationLevel = Literal["read_committed", "read_uncommitted"]

_END_CHECK_INTERVAL_S = 0.5  # between two ListOffsets requests once quiet


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One record read from Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class TopicNotFound(OnceflowError):
    """The topic to read does not exist on the cluster."""


class DrainTimeout(OnceflowError):
    """The topic was not drained within the timeout.

    :ivar records: what was read before giving up.
    :ivar lag: per partition, ``end offset - position`` when giving up.
    """

    def __init__(self, message: str, records: list[ConsumedRecord], lag: dict[int, int]):
        super().__init__(message)
        self.records = records
        self.lag = lag


def read_committed(
    bootstrap: str,
    topic: str,
    quiet_ms: int = 3000,
    timeout_s: float = 300.0,
    progress: bool = True,
    isolation_level: IsolationLevel = "read_committed",
) -> list[ConsumedRecord]:
    """Read every record of every partition of ``topic``, from the beginning.

    The consumer is manually assigned, has no group and commits nothing, so it
    leaves no trace on the cluster. With ``read_committed`` (the default) it
    returns only records of committed transactions (and non-transactional
    ones); ``read_uncommitted`` also returns open and aborted transactions'
    records -- what a reader without isolation would see.

    Protocol:

    1. Assign all partitions, seek to the beginning.
    2. Poll until no record has arrived for ``quiet_ms``.
    3. Ask for the end offsets (with ``read_committed`` the broker answers the
       last stable offset, LSO) and keep polling until every partition's
       position has reached its end offset. Offsets are not contiguous on a
       transactional topic -- commit/abort markers take offsets -- so the
       record count is never compared with the offsets; the consumer's position
       moves past markers and aborted batches as it reads them.

    An open transaction pins the LSO: its records (and everything after them)
    are invisible to ``read_committed`` until it commits or aborts; this is
    logged as a warning when the high watermark is above the LSO at the end.

    :param bootstrap: Kafka bootstrap servers.
    :param quiet_ms: how long no new record must have arrived before the topic
        counts as drained; long enough for a job's next checkpoint to commit
        if the job may still be running.
    :param timeout_s: give up after this long.
    :param progress: show a progress bar on stderr (only on a terminal).
    :param isolation_level: ``read_committed`` or ``read_uncommitted``.
    :returns: the records, per partition in offset order, partitions interleaved.
    :raises TopicNotFound: if the topic does not exist.
    :raises DrainTimeout: if not drained within ``timeout_s`` (a producer still
        writing, or a partition without leader); carries what was read.
    :raises kafka.errors.KafkaError: if the broker cannot be reached.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    consumer = _isolated_consumer(bootstrap, isolation_level)
    records: list[ConsumedRecord] = []
    bar = tqdm(
        unit="rec",
        unit_scale=True,
        desc=f"read {topic}",
        file=sys.stderr,
        disable=None if progress else True,  # None: off when stderr is not a terminal
        mininterval=0.5,
    )
    try:
        tps = _assign_from_beginning(consumer, topic, deadline)
        last_record = time.monotonic()
        last_end_check = 0.0
        while True:
            n = _poll_into(consumer, records)
            now = time.monotonic()
            if n:
                last_record = now
                bar.update(n)
            elif now - last_record >= quiet_ms / 1000 and (
                now - last_end_check >= _END_CHECK_INTERVAL_S
            ):
                # Quiet: has every partition's position reached its end?
                last_end_check = now
                if all(v <= 0 for v in _lag(consumer, tps).values()):
                    _warn_open_transactions(consumer, tps, isolation_level)
                    break
            if now >= deadline:
                lag = _lag(consumer, tps)
                raise DrainTimeout(
                    f"{topic} not drained after {timeout_s:g} s: {len(records)} records read, "
                    f"the last {now - last_record:.1f} s ago; offsets left per partition: "
                    f"{lag}. A producer may still be writing (a steady feed is never quiet "
                    "for --quiet-ms) or a partition is unavailable: raise --timeout, lower "
                    "--quiet-ms, or stop the writer",
                    records,
                    lag,
                )
    finally:
        bar.close()
        consumer.close(autocommit=False)
    log.info(
        "read %d records from %s (%d partitions, %s) in %.1f s",
        len(records),
        topic,
        len(tps),
        isolation_level,
        time.monotonic() - started,
    )
    return records


def _isolated_consumer(bootstrap: str, isolation_level: IsolationLevel) -> KafkaConsumer:
    """A consumer without group or commits, reading at ``isolation_level``; it leaves no trace."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        # The whole point: records of aborted or open transactions are not output.
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        # Reading a topic must never create it.
        allow_auto_create_topics=False,
        max_poll_records=10_000,
    )


def _assign_from_beginning(
    consumer: KafkaConsumer, topic: str, deadline: float
) -> list[TopicPartition]:
    """Assign every partition of ``topic`` and seek to the beginning; returns them in order."""
    partitions = _partitions(consumer, topic, deadline)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return tps


def _poll_into(consumer: KafkaConsumer, records: list[ConsumedRecord]) -> int:
    """Poll once (200 ms at most) and append what came; returns how many records came."""
    batch = consumer.poll(timeout_ms=200)
    n = 0
    for tp, msgs in batch.items():
        n += len(msgs)
        records.extend(
            ConsumedRecord(tp.topic, tp.partition, m.offset, m.timestamp, m.key, m.value)
            for m in msgs
        )
    return n


def _lag(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[int, int]:
    """``end offset - position`` per partition (the end is the LSO under read_committed)."""
    ends = consumer.end_offsets(tps)
    return {tp.partition: ends[tp] - consumer.position(tp) for tp in tps}


def _partitions(consumer: KafkaConsumer, topic: str, deadline: float) -> set[int]:
    # Metadata of a just-created topic can lag; retry briefly before concluding.
    wait_until = min(deadline, time.monotonic() + 5.0)
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() >= wait_until:
            raise TopicNotFound(
                f"topic {topic!r} does not exist on the cluster: check the topic name "
                "and --bootstrap (was the job or `onceflow produce` pointed elsewhere?)"
            )
        time.sleep(0.25)


def _warn_open_transactions(
    consumer: KafkaConsumer, tps: list[TopicPartition], isolation_level: str
) -> None:
    if isolation_level != "read_committed":
        return
    for tp in tps:
        high = consumer.highwater(tp)
        pos = consumer.position(tp)
        if high is not None and pos is not None and high > pos:
            log.warning(
                "%s-%d: %d offsets past the last stable offset %d belong to a transaction "
                "that is still open: read_committed cannot see them (nor anything after them) "
                "until it commits or aborts; a lingering one can be found and aborted with "
                "kafka-transactions find-hanging / abort",
                tp.topic,
                tp.partition,
                high - pos,
                pos,
            )

"""A steady feed of timestamped records and a read_committed watcher of the output.

The latency and recovery benchmarks need to know, for each output record, when
its input was produced and when a ``read_committed`` reader first saw it. The
:class:`Feeder` writes the workload at a fixed rate and adds the produce time to
each JSON record (``"produced_ms"``: the dedup job passes values through as they
are); the :class:`Collector` polls the output topic with ``read_committed`` and
notes the wall clock when each record arrives. Both run on this machine, so one
clock serves both ends.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

from onceflow.testing.workload import WorkloadSpec, generate

__all__ = ["Collector", "Feeder", "Seen", "percentile", "stamp"]

log = logging.getLogger(__name__)

_PRODUCED = re.compile(rb'"produced_ms":(\d+)')


def stamp(value: bytes, produced_ms: int) -> bytes:
    """Add ``"produced_ms"`` to a JSON object's bytes (the workload's records end in ``}``)."""
    if not value.endswith(b"}"):
        raise ValueError("only JSON objects can carry a produce time")
    return value[:-1] + b',"produced_ms":%d}' % produced_ms


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list.

    :raises ValueError: for an empty list or ``q`` outside [0, 100].
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within [0, 100]")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_values[int(rank) - 1]


@dataclass(frozen=True, slots=True)
class Seen:
    """One output record as the read_committed reader saw it."""

    key: bytes | None
    produced_ms: int
    seen_ms: int


class Collector(threading.Thread):
    """Reads every partition of ``topic`` read_committed from the beginning, noting times.

    :param bootstrap: Kafka bootstrap servers.
    :param topic: the output topic (must exist).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name=f"collector-{topic}", daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            # Latency is "until a read_committed reader can see it".
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # The broker answers a fetch at once instead of waiting up to 500 ms for data.
            fetch_max_wait_ms=10,
            max_poll_records=5_000,
        )
        tps = [
            TopicPartition(topic, p)
            for p in sorted(self.consumer.partitions_for_topic(topic) or [])
        ]
        if not tps:
            raise RuntimeError(f"output topic {topic} has no partitions")
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                batch = self.consumer.poll(timeout_ms=20)
                now = int(time.time() * 1000)
                got: list[Seen] = []
                for records in batch.values():
                    for r in records:
                        m = _PRODUCED.search(r.value or b"")
                        if m is not None:
                            got.append(Seen(r.key, int(m.group(1)), now))
                if got:
                    with self._lock:
                        self.seen.extend(got)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
            log.exception("collector failed")
        finally:
            self.consumer.close()

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class Feeder(threading.Thread):
    """Writes ``spec``'s records to ``topic`` at ``rate`` records/s, each with its produce time.

    Keyed by id, like ``onceflow produce``; a low ``linger.ms`` so the feed itself adds
    little latency. Stops at the end of the workload or on :meth:`stop`.

    :ivar sent: records written so far.
    :ivar unique_ids: the distinct ids written so far (what an exact job outputs).
    """

    def __init__(self, bootstrap: str, topic: str, spec: WorkloadSpec, rate: float) -> None:
        super().__init__(name=f"feeder-{topic}", daemon=True)
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=2, enable_idempotence=True
        )
        self.topic = topic
        self.spec = spec
        self.rate = rate
        self.sent = 0
        self.unique_ids: set[str] = set()
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            for item in generate(self.spec):
                if self._stop_event.is_set():
                    break
                ahead = started + self.sent / self.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                assert item.ident is not None  # the benchmark workload has no malformed records
                value = stamp(item.value, int(time.time() * 1000))
                self.producer.send(self.topic, key=item.ident.encode(), value=value)
                self.unique_ids.add(item.ident)
                self.sent += 1
            self.producer.flush(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
            log.exception("feeder failed")
        finally:
            self.producer.close(timeout=10)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=70)

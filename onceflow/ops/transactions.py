"""Kafka transactions a job leaves open: list them, find the stuck ones, abort them.

A Flink ``KafkaSink`` with exactly-once writes each checkpoint's records in a
transaction whose id is ``<prefix>-<subtask>-<n>`` (onceflow's sinks add their
own suffix to the job's prefix: ``<job prefix>-out-0-7``). A transaction is open
for about one checkpoint interval; while it is open it pins the *last stable
offset* (LSO) of every partition it wrote: a ``read_committed`` reader sees
nothing past its first record, on that partition, until it commits or aborts.

Two ways a transaction outlives its job and stalls those readers:

- **lingering**: the producer is gone (a crash, a prefix change, a downscale, a
  deleted job) but the transaction coordinator still holds the transaction as
  open. The coordinator aborts it once its ``transaction.timeout.ms`` passes (the
  job's ``--transaction-timeout-ms``, 10 min by default; Flink's default is 1 h).
  A restarted job aborts lingering transactions of its *own* prefix; nothing
  aborts those of a prefix no job uses any more before their timeout.
- **hanging** (Kafka's term, ``kafka-transactions find-hanging``): a partition
  holds an open transaction the coordinator does not know of (any more); nothing
  will ever end it but an abort marker written to that partition.

Engines: the views (ListTransactions, DescribeTransactions, DescribeProducers, the
end offsets of both isolation levels) come from kafka-python's admin client in
this process, in well under a second; finding hanging transactions and aborting
run Kafka's own ``org.apache.kafka.tools.TransactionsCommand`` (the
``kafka-transactions.sh`` tool of the resolved ``kafka`` jars), so they follow
Kafka's definitions exactly: ``find-hanging``, ``forceTerminateTransaction`` (the
coordinator aborts the transaction of one transactional id and bumps its epoch,
fencing a zombie producer) and ``abort`` (an abort marker for one partition).

Aborting is safe for transactions of a job that will never resume, or that has
already resumed. It loses data in one case: a job that crashed after a checkpoint
completed and before that checkpoint's transactions were committed resumes from
that checkpoint and commits them then; abort them before it resumes and that
checkpoint's output is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onceflow.errors import OnceflowError

__all__ = [
    "OPEN_STATES",
    "HangingTransaction",
    "OpenTransaction",
    "PartitionPin",
    "Stuck",
    "abort_on_partition",
    "find_hanging",
    "find_stuck",
    "force_terminate",
    "matches_prefix",
    "open_transactions",
    "parse_tool_table",
    "render_hanging",
    "render_open",
]

log = logging.getLogger(__name__)

TOOL = "org.apache.kafka.tools.TransactionsCommand"

OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")
"""Coordinator states of a transaction that has not ended yet."""


def matches_prefix(transactional_id: str, prefix: str | None) -> bool:
    """Whether ``transactional_id`` belongs to ``prefix`` (None: every id).

    Flink derives ids as ``<prefix>-<subtask>-<n>``: the prefix matches itself and
    ids that continue with ``-``, so ``dedup-1`` does not claim ``dedup-10-out-0-3``.
    """
    if not prefix:
        return True
    return transactional_id == prefix or transactional_id.startswith(prefix + "-")


@dataclass(frozen=True)
class PartitionPin:
    """One partition an open transaction wrote, and what it holds back there.

    :param start_offset: the transaction's first offset on the partition (None when
        the partition leader reports no open transaction of this producer).
    :param last_stable_offset: the end offset a ``read_committed`` reader sees.
    :param high_watermark: the end offset a ``read_uncommitted`` reader sees.
    """

    topic: str
    partition: int
    start_offset: int | None
    last_stable_offset: int
    high_watermark: int

    @property
    def lag(self) -> int:
        """Offsets a read_committed reader cannot see yet on this partition."""
        return max(0, self.high_watermark - self.last_stable_offset)

    @property
    def pins(self) -> bool:
        """Whether this transaction is the one holding the LSO where it is."""
        return self.start_offset is not None and self.start_offset == self.last_stable_offset

    def render(self) -> str:
        where = f"{self.topic}-{self.partition}"
        if self.start_offset is None:
            return f"{where} (no open data there)"
        held = f"pins the LSO, {self.lag:,} offsets behind" if self.pins else "behind another"
        return f"{where} from offset {self.start_offset:,} ({held})"


@dataclass(frozen=True)
class OpenTransaction:
    """A transaction the coordinator holds as open."""

    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    started_ms: int | None
    partitions: tuple[PartitionPin, ...] = field(default_factory=tuple)

    def age_s(self, now_ms: int | None = None) -> float | None:
        if self.started_ms is None or self.started_ms < 0:
            return None
        return max(0.0, ((now_ms or int(time.time() * 1000)) - self.started_ms) / 1000)

    @property
    def lag(self) -> int:
        """Offsets held back by this transaction, over the partitions where it pins."""
        return sum(p.lag for p in self.partitions if p.pins)

    def to_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        return {
            "transactional_id": self.transactional_id,
            "state": self.state,
            "producer_id": self.producer_id,
            "producer_epoch": self.producer_epoch,
            "timeout_ms": self.timeout_ms,
            "age_s": self.age_s(now_ms),
            "lag": self.lag,
            "partitions": [{**p.__dict__, "lag": p.lag, "pins": p.pins} for p in self.partitions],
        }


@dataclass(frozen=True)
class HangingTransaction:
    """One row of Kafka's ``find-hanging``: an open transaction on a partition that its
    coordinator does not track."""

    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    start_offset: int
    last_timestamp_ms: int
    duration_min: int

    def render(self) -> str:
        return (
            f"{self.topic}-{self.partition} from offset {self.start_offset:,}: producer "
            f"{self.producer_id} epoch {self.producer_epoch}, last write "
            f"{self.duration_min} min ago"
        )


@dataclass
class Stuck:
    """What :func:`find_stuck` found: lingering (coordinator-known) and hanging ones."""

    lingering: list[OpenTransaction] = field(default_factory=list)
    hanging: list[HangingTransaction] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lingering or self.hanging)

    def lines(self) -> list[str]:
        """One line per stuck transaction (the verifier's report keeps these)."""
        return [f"lingering {t.transactional_id} ({t.state}) on " + ", ".join(
            p.render() for p in t.partitions
        ) for t in self.lingering] + [f"hanging {h.render()}" for h in self.hanging]  # fmt: skip


def _admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    except KafkaError as exc:
        raise OnceflowError(
            f"no Kafka broker answers at {bootstrap} ({exc}); start the local one with "
            "`make up` or pass --bootstrap"
        ) from exc


def end_offsets(bootstrap: str, partitions: Sequence[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
    """(last stable offsets, high watermarks) of ``partitions``."""
    from kafka import KafkaConsumer

    out: list[dict[Any, int]] = []
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level=isolation,
            allow_auto_create_topics=False,
            request_timeout_ms=15_000,
        )
        try:
            out.append(dict(consumer.end_offsets(list(partitions))) if partitions else {})
        finally:
            consumer.close()
    return out[0], out[1]


def open_transactions(bootstrap: str, prefix: str | None = None) -> list[OpenTransaction]:
    """The open transactions of ``prefix`` (every prefix when None), oldest first.

    For each, the partitions it wrote with its first offset there, the partition's
    last stable offset and high watermark (so whether it pins the LSO and how far
    read_committed readers are behind).

    :raises OnceflowError: the broker cannot be reached or refuses the admin calls.
    """
    from kafka.errors import KafkaError

    admin = _admin(bootstrap)
    try:
        listed = admin.list_transactions(state_filters=list(OPEN_STATES))
        ids = sorted(
            {
                t.transactional_id
                for listing in listed.values()
                for t in listing
                if matches_prefix(t.transactional_id, prefix)
            }
        )
        if not ids:
            return []
        described = admin.describe_transactions(ids)
        partitions = sorted(
            {tp for d in described.values() for tp in d.topic_partitions},
            key=lambda tp: (tp.topic, tp.partition),
        )
        producers = admin.describe_producers(partitions) if partitions else {}
    except KafkaError as exc:
        raise OnceflowError(
            f"could not list the transactions on {bootstrap}: {exc!r} (the admin calls "
            "need Kafka 3.0+ and, on a secured cluster, DESCRIBE on the transactional ids)"
        ) from exc
    finally:
        admin.close()
    lso, hw = end_offsets(bootstrap, partitions)
    found: list[OpenTransaction] = []
    for tid, d in described.items():
        state = str(getattr(d.state, "value", d.state))
        if state not in OPEN_STATES:
            continue  # ended between the listing and the description
        pins = []
        for tp in sorted(d.topic_partitions, key=lambda tp: (tp.topic, tp.partition)):
            start = next(
                (
                    p.current_transaction_start_offset
                    for p in producers.get(tp, ()).active_producers
                    if p.producer_id == d.producer_id and p.current_transaction_start_offset >= 0
                ),
                None,
            ) if tp in producers else None  # fmt: skip
            pins.append(
                PartitionPin(tp.topic, tp.partition, start, int(lso.get(tp, 0)), int(hw.get(tp, 0)))
            )
        started = d.transaction_start_time_ms if d.transaction_start_time_ms >= 0 else None
        found.append(
            OpenTransaction(
                transactional_id=tid,
                state=state,
                producer_id=d.producer_id,
                producer_epoch=d.producer_epoch,
                timeout_ms=d.transaction_timeout_ms,
                started_ms=started,
                partitions=tuple(pins),
            )
        )
    return sorted(found, key=lambda t: (t.started_ms or 0, t.transactional_id))


def parse_tool_table(stdout: str) -> list[dict[str, str]]:
    """Rows of a ``kafka-transactions`` table (tab-separated, padded, header first)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip() and not ln.startswith("SLF4J")]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("\t") if h.strip()]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("\t")]
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


def _tool(bootstrap: str, args: Sequence[str], timeout: float = 120) -> str:
    """Run Kafka's TransactionsCommand; its stdout, or an error with its stderr."""
    from onceflow.runtime.java import run_java_main

    result = run_java_main(
        TOOL,
        ["--bootstrap-server", bootstrap, *args],
        jvm_opts=("-Xmx256m", "-Dlog4j2.level=WARN"),
        timeout=timeout,
    )
    if result.returncode != 0:
        detail = "\n".join(
            ln for ln in (result.stderr or result.stdout).splitlines() if not ln.startswith("SLF4J")
        )
        raise OnceflowError(f"kafka-transactions {args[0]} failed: {detail.strip()[-600:]}")
    return result.stdout


def _broker_ids(bootstrap: str) -> list[int]:
    admin = _admin(bootstrap)
    try:
        return sorted(int(b["broker_id"]) for b in admin.describe_cluster()["brokers"])
    finally:
        admin.close()


def find_hanging(
    bootstrap: str,
    *,
    older_than_min: int = 15,
    topics: Iterable[str] | None = None,
) -> list[HangingTransaction]:
    """Kafka's ``find-hanging`` on every broker: open transactions on partitions that
    their coordinator does not track, whose producer last wrote ``older_than_min``
    minutes ago or earlier (Kafka's default 15 is the broker's default
    ``transaction.max.timeout.ms``: younger ones may still be in flight).

    :param topics: keep only rows of these topics (the search still covers the broker).
    """
    wanted = set(topics) if topics is not None else None
    found: list[HangingTransaction] = []
    for broker in _broker_ids(bootstrap):
        out = _tool(
            bootstrap,
            ["find-hanging", "--broker-id", str(broker), "--max-transaction-timeout",
             str(older_than_min)],
        )  # fmt: skip
        for row in parse_tool_table(out):
            if wanted is not None and row.get("Topic") not in wanted:
                continue
            found.append(
                HangingTransaction(
                    topic=row["Topic"],
                    partition=int(row["Partition"]),
                    producer_id=int(row["ProducerId"]),
                    producer_epoch=int(row["ProducerEpoch"]),
                    coordinator_epoch=int(row["CoordinatorEpoch"]),
                    start_offset=int(row["StartOffset"]),
                    last_timestamp_ms=int(row["LastTimestamp"]),
                    duration_min=int(row["Duration(min)"]),
                )
            )
    return found


def find_stuck(
    bootstrap: str,
    prefix: str | None = None,
    *,
    older_than_s: float = 300,
    topics: Iterable[str] | None = None,
) -> Stuck:
    """Lingering transactions of ``prefix`` open for ``older_than_s`` or longer, and
    Kafka's hanging transactions (``older_than_s`` in whole minutes, rounded down).

    The default, 5 min, is onceflow's ``execution.checkpointing.timeout``: no
    transaction of a healthy checkpoint stays open longer.
    """
    now = int(time.time() * 1000)
    lingering = [
        t
        for t in open_transactions(bootstrap, prefix)
        if (t.age_s(now) or 0.0) >= older_than_s
        and (topics is None or any(p.topic in set(topics) for p in t.partitions))
    ]
    hanging = find_hanging(bootstrap, older_than_min=int(older_than_s // 60), topics=topics)
    return Stuck(lingering, hanging)


def force_terminate(bootstrap: str, transactional_id: str) -> None:
    """Abort the open transaction of ``transactional_id`` through its coordinator
    (``kafka-transactions forceTerminateTransaction``): abort markers on every partition
    it wrote, and a new epoch, so a zombie producer of that id is fenced."""
    _tool(bootstrap, ["forceTerminateTransaction", "--transactionalId", transactional_id])


def abort_on_partition(bootstrap: str, topic: str, partition: int, start_offset: int) -> None:
    """Write an abort marker for the open transaction that starts at ``start_offset``
    on one partition (``kafka-transactions abort``): the only way to end a hanging one."""
    _tool(
        bootstrap,
        ["abort", "--topic", topic, "--partition", str(partition), "--start-offset",
         str(start_offset)],
    )  # fmt: skip


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render_open(found: Sequence[OpenTransaction], now_ms: int | None = None) -> str:
    """A table of open transactions, one partition per line under each."""
    if not found:
        return "no open transactions"
    lines = [f"{'TRANSACTIONAL ID':<40} {'STATE':<14} {'AGE':>7} {'TIMEOUT':>8} {'LAG':>8}"]
    for t in found:
        lines.append(
            f"{t.transactional_id:<40} {t.state:<14} {_age(t.age_s(now_ms)):>7} "
            f"{_age(t.timeout_ms / 1000):>8} {t.lag:>8,}"
        )
        lines.extend(f"    {p.render()}" for p in t.partitions)
    return "\n".join(lines)


def render_hanging(found: Sequence[HangingTransaction]) -> str:
    if not found:
        return "no hanging transactions"
    return "\n".join(h.render() for h in found)

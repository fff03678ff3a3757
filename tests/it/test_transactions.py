"""``onceflow txn`` against a real broker: a transaction left open on purpose.

A transactional producer begins a transaction, writes to both partitions of a
topic and is SIGKILLed. Its transaction stays open (10 min timeout) and pins the
last stable offset: records committed afterwards by another producer are
invisible to a read_committed reader. ``onceflow txn list`` and ``find-hanging``
must see it, with the offsets it holds back; ``onceflow txn abort`` must end it,
after which the reader sees every committed record and none of the aborted ones.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from onceflow.cli import main
from onceflow.ops import transactions as txn
from onceflow.ops.prefixes import JobOutputs, check_prefix, record_prefix
from onceflow.testing.drain import read_committed

ABANDONED = b"abandoned"

# Begins a transaction, writes 3 + 2 records to partitions 0 and 1, flushes, says so,
# then waits to be killed (the transaction is never ended).
_ABANDON = textwrap.dedent(
    """
    import sys, time
    from kafka import KafkaProducer
    bootstrap, tid, topic = sys.argv[1:4]
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid,
                      transaction_timeout_ms=600_000)
    p.init_transactions()
    p.begin_transaction()
    for i in range(5):
        p.send(topic, value=b"abandoned", partition=i % 2)
    p.flush()
    print("open", flush=True)
    time.sleep(600)
    """
)


def _commit(bootstrap: str, tid: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i, value in enumerate(values):
            producer.send(topic, value=value, partition=i % 2)
        producer.commit_transaction()
    finally:
        producer.close(timeout=5)


def _abandon(bootstrap: str, tid: str, topic: str) -> None:
    """Leave a transaction of ``tid`` open: its producer is SIGKILLed mid-transaction."""
    with subprocess.Popen(
        [sys.executable, "-c", _ABANDON, bootstrap, tid, topic],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _values(bootstrap: str, topic: str) -> list[bytes]:
    return sorted(r.value or b"" for r in read_committed(bootstrap, topic, quiet_ms=1000))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def abandoned(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
) -> Iterator[tuple[str, str]]:
    """(topic, prefix): 4 committed records, an open transaction of ``<prefix>-0-1``
    (5 records), then 4 more committed records behind it."""
    topic = topic_factory("out", partitions=2)
    prefix = unique_name("job")
    _commit(kafka_bootstrap, unique_name("before"), topic, [b"before-%d" % i for i in range(4)])
    _abandon(kafka_bootstrap, f"{prefix}-0-1", topic)
    _commit(kafka_bootstrap, unique_name("after"), topic, [b"after-%d" % i for i in range(4)])
    time.sleep(1.5)  # older than the --older-than 1 below
    yield topic, prefix
    for t in txn.open_transactions(kafka_bootstrap, prefix):  # leave the broker clean
        # A new producer of the id fences the old one: its open transaction is aborted.
        fencer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=t.transactional_id
        )
        fencer.init_transactions()
        fencer.close(timeout=5)


def test_an_abandoned_transaction_is_listed_found_stalls_readers_and_is_aborted(
    kafka_bootstrap: str, abandoned: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic, prefix = abandoned
    boot = ["--bootstrap", kafka_bootstrap, "--prefix", prefix]

    # The reader stalls at the open transaction: nothing committed after it is visible.
    assert _values(kafka_bootstrap, topic) == sorted(b"before-%d" % i for i in range(4))

    code, out = _cli(capsys, "txn", "list", *boot, "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert listed["transactional_id"] == f"{prefix}-0-1" and listed["state"] == "Ongoing"
    pins = {p["partition"]: p for p in listed["partitions"]}
    assert set(pins) == {0, 1} and all(p["pins"] for p in pins.values())
    # Behind the LSO of each partition: the abandoned records, the ones committed after
    # them and their commit marker (3+2 abandoned, 2+2 after, one marker each).
    assert (pins[0]["lag"], pins[1]["lag"]) == (3 + 2 + 1, 2 + 2 + 1)
    assert listed["lag"] == 11 and listed["age_s"] >= 1

    code, out = _cli(capsys, "txn", "find-hanging", *boot, "--older-than", "1")
    assert code == 1, out  # exit 1: something is stuck
    assert f"{prefix}-0-1" in out and "pins the LSO" in out
    code, out = _cli(capsys, "txn", "abort", *boot, "--older-than", "1")
    assert code == 0 and "dry run" in out
    assert txn.open_transactions(kafka_bootstrap, prefix), "a dry run must abort nothing"

    code, out = _cli(capsys, "txn", "abort", *boot, "--older-than", "1", "--yes")
    assert code == 0 and "aborted 1; 0 of them still open" in out
    assert txn.open_transactions(kafka_bootstrap, prefix) == []
    # Unblocked: every committed record, none of the abandoned ones.
    assert _values(kafka_bootstrap, topic) == sorted(
        [b"before-%d" % i for i in range(4)] + [b"after-%d" % i for i in range(4)]
    )


def test_a_partition_abort_ends_an_open_transaction_on_that_partition_only(
    kafka_bootstrap: str, abandoned: tuple[str, str]
) -> None:
    # Kafka's `abort` (the only fix for a transaction its coordinator lost track of):
    # an abort marker on one partition, found by the transaction's start offset there.
    topic, prefix = abandoned
    [open_txn] = txn.open_transactions(kafka_bootstrap, prefix)
    # The coordinator still tracks it: Kafka's find-hanging does not call it hanging.
    assert not [h for h in txn.find_hanging(kafka_bootstrap, older_than_min=0) if h.topic == topic]
    pin = next(p for p in open_txn.partitions if p.partition == 1)
    assert pin.start_offset is not None
    txn.abort_on_partition(kafka_bootstrap, topic, 1, pin.start_offset)
    [after] = txn.open_transactions(kafka_bootstrap, prefix)
    by_partition = {p.partition: p for p in after.partitions}
    assert not by_partition[1].pins and by_partition[1].lag == 0
    assert by_partition[0].pins and by_partition[0].lag == 6
    values = _values(kafka_bootstrap, topic)
    assert ABANDONED not in values and b"after-1" in values and b"after-0" not in values


def test_a_changed_prefix_is_warned_about_with_the_old_prefix_open_transactions(
    kafka_bootstrap: str, abandoned: tuple[str, str], tmp_path: Path
) -> None:
    topic, old = abandoned
    record = tmp_path / "prefixes.json"
    record_prefix(JobOutputs(kafka_bootstrap, old, (topic,), True), "jobs/dedup.py", path=record)
    same = JobOutputs(kafka_bootstrap, old, (topic,), True)
    assert check_prefix(same, path=record) == []
    [warning] = check_prefix(JobOutputs(kafka_bootstrap, "new-1", (topic,), True), path=record)
    assert f"last written with transactional id prefix {old!r}" in warning
    assert f"1 transaction(s) of {old!r} are open" in warning
    assert f"onceflow txn abort --prefix {old} --yes" in warning

"""The data tools against a real broker: produce a workload, drain it, check it.

No job runs here: the checker is pointed at the raw input (where every
duplicate and malformed record must show, in exact figures), at a hand-made
perfect dedup output (which must pass), and at transactional topics (where
read_committed must hide aborted and open transactions).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from onceflow.testing import check, produce
from onceflow.testing.check import check_output, compare_dead_letters
from onceflow.testing.drain import DrainTimeout, TopicNotFound, read_committed
from onceflow.testing.workload import Expectation, WorkloadSpec, generate

pytestmark = pytest.mark.it

QUIET_MS = 1000


def _parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


def test_raw_input_shows_every_duplicate_and_malformed_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("raw", partitions=3)
    spec = WorkloadSpec(5_000, 0.2, 0.02, seed=7)
    path = tmp_path / "expect.json"

    exp = produce.produce(kafka_bootstrap, topic, spec, path, partitions=3, progress=False)

    assert (len(exp.unique_ids), exp.duplicates, exp.malformed) == (3_900, 1_000, 100)
    assert spec.oversize == 1  # a ~1 MB record went through the producer too
    assert Expectation.load(path) == exp

    records = read_committed(kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False)
    assert len(records) == 5_000  # not transactional: no markers, every offset a record

    # Nothing deduplicated the topic: the checker must see exactly the workload.
    r = check_output(exp.unique_ids, records)
    assert not r.ok
    assert r.expected == 3_900
    assert r.seen == 5_000
    assert r.duplicated == exp.duplicates == 1_000
    assert r.missing == 0
    assert r.unexpected == spec.oversize  # well-formed, but an id nobody expects
    assert r.invalid == exp.malformed - spec.oversize == 99
    assert r.unique == 3_900 + spec.oversize

    # Keyed by id: all copies of an id in one partition, in generation order.
    partition_of: dict[str, set[int]] = defaultdict(set)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for rec in sorted(records, key=lambda x: (x.partition, x.offset)):
        if rec.key is None:  # malformed records have no key
            continue
        assert rec.value is not None
        ident = json.loads(rec.value)["id"]
        assert rec.key == ident.encode()
        partition_of[ident].add(rec.partition)
        by_partition[rec.partition].append(rec.value)
    assert all(len(p) == 1 for p in partition_of.values())
    assert len({p for ps in partition_of.values() for p in ps}) == 3
    for p, values in by_partition.items():
        generated = [
            i.value for i in generate(spec) if i.ident is not None and partition_of[i.ident] == {p}
        ]
        assert values == generated, f"partition {p} is not in generation order"


def test_check_passes_on_a_perfect_dedup_output_and_dead_letters(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from onceflow.operators.records import dead_letter

    spec = WorkloadSpec(3_000, 0.3, 0.05, seed=11, oversize_bytes=20_000, oversize_every=10)
    items = list(generate(spec))
    exp = Expectation.collect(items, spec)
    path = exp.save(tmp_path / "expect.json.gz")
    out = topic_factory("out", partitions=2)
    dlq = topic_factory("dlq")

    # What an exactly-once dedup job must write: first occurrences, and one
    # dead letter per malformed record; committed in two transactions.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{out}")
    try:
        producer.init_transactions()
        for half in (items[:1_500], items[1_500:]):
            producer.begin_transaction()
            for n, item in enumerate(half):
                if item.kind == "unique":
                    producer.send(out, item.value, key=item.ident.encode() if item.ident else None)
                elif item.kind == "malformed":
                    reason = item.malformed_reason or "not_json"
                    producer.send(dlq, dead_letter(item.value, reason, "-", "in", 0, n))
            producer.commit_transaction()
    finally:
        producer.close()

    json_path = tmp_path / "report.json"
    args = _parse(
        check,
        [
            "--bootstrap", kafka_bootstrap, "--topic", out, "--expect", str(path),
            "--dlq-topic", dlq, "--quiet-ms", str(QUIET_MS), "--json", str(json_path),
            "--no-progress",
        ],
    )  # fmt: skip
    assert check.run(args) == 0, capsys.readouterr().out
    doc = json.loads(json_path.read_text())
    assert doc["ok"] is True
    assert doc["reports"]["output"]["seen"] == spec.uniques == 1_950
    assert doc["reports"]["dead_letters"]["seen"] == spec.malformed == 150
    printed = capsys.readouterr().out
    assert "output: OK" in printed and "dead letters: OK" in printed


def test_check_fails_on_a_flawed_dead_letter_topic(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from onceflow.operators.records import dead_letter

    spec = WorkloadSpec(1_000, 0.0, 0.05, seed=5, oversize_every=0)
    exp = Expectation.collect(generate(spec), spec)
    dlq = topic_factory("dlq")
    values = list(exp.malformed_values)
    written = values[1:] + values[-1:] + [b"never produced"]  # 1 lost, 1 twice, 1 extra
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for n, v in enumerate(written):
        producer.send(dlq, dead_letter(v, "not_json", "-", "in", 0, n))
    producer.send(dlq, b"not a dead letter")
    producer.flush()
    producer.close()

    r = compare_dead_letters(values, read_committed(kafka_bootstrap, dlq, quiet_ms=QUIET_MS))
    assert (r.expected, r.seen) == (50, 52)
    assert (r.missing, r.duplicated, r.unexpected, r.invalid) == (1, 1, 1, 1)
    assert not r.ok


def test_read_committed_hides_aborted_transactions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("txn", partitions=2)
    committed = [f'{{"id":"c{i}"}}'.encode() for i in range(10)]
    aborted = [f'{{"id":"a{i}"}}'.encode() for i in range(5)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topic}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for v in committed:
            producer.send(topic, v, key=v)
        producer.commit_transaction()
        producer.begin_transaction()
        for v in aborted:
            producer.send(topic, v, key=v)
        # Without this flush, abort_transaction() drops the batches still in the
        # accumulator and nothing aborted ever reaches the log.
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close()

    rc = read_committed(kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False)
    ru = read_committed(
        kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False,
        isolation_level="read_uncommitted",
    )  # fmt: skip

    assert sorted(r.value or b"" for r in rc) == sorted(committed)
    assert sorted(r.value or b"" for r in ru) == sorted(committed + aborted)
    # Commit and abort markers take offsets: never count records by offsets.
    last = {p: max(r.offset for r in ru if r.partition == p) for p in (0, 1)}
    assert sum(last.values()) + 2 > len(ru)


def test_read_committed_stops_at_an_open_transaction(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("open")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topic}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, b"first")
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send(topic, b"pending")
        producer.flush()
        # The open transaction pins the last stable offset: drained, without it.
        pending = read_committed(kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False)
        assert [r.value for r in pending] == [b"first"]
        producer.commit_transaction()
    finally:
        producer.close()
    done = read_committed(kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False)
    assert [r.value for r in done] == [b"first", b"pending"]


def test_a_topic_still_being_written_times_out_with_what_was_read(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("steady")
    spec = WorkloadSpec(1_500, 0.0, 0.0, seed=1)
    writer = threading.Thread(
        target=produce.produce,
        args=(kafka_bootstrap, topic, spec, None),
        kwargs={"progress": False, "rate": 500.0},  # 3 s of steady feed: never quiet
    )
    writer.start()
    try:
        with pytest.raises(DrainTimeout, match="not drained") as err:
            read_committed(kafka_bootstrap, topic, quiet_ms=1000, timeout_s=1.5, progress=False)
    finally:
        writer.join()
    assert 0 < len(err.value.records) < 1_500
    assert set(err.value.lag) == {0}


def test_missing_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    with pytest.raises(TopicNotFound, match="does not exist"):
        read_committed(kafka_bootstrap, "it_no_such_topic_for_onceflow", timeout_s=1.0)


def test_produce_cli_writes_the_expectation(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("cli")
    path = tmp_path / "e.json"
    args = _parse(
        produce,
        [
            "--bootstrap", kafka_bootstrap, "--topic", topic, "--count", "2000",
            "--duplicates", "0.1", "--malformed", "0.01", "--seed", "3", "--expect", str(path),
            "--rate", "4000", "--no-progress",
        ],
    )  # fmt: skip
    assert produce.run(args) == 0
    exp = Expectation.load(path)
    assert (len(exp.unique_ids), exp.duplicates, exp.malformed) == (1_780, 200, 20)
    assert exp.spec["seed"] == 3
    assert len(read_committed(kafka_bootstrap, topic, quiet_ms=QUIET_MS, progress=False)) == 2_000

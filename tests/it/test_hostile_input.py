"""The hostile-input corpus through both jobs on the mini-cluster.

Each job reads every class of :mod:`hostile_corpus` (with a valid control record
between any two of them) in one bounded run and must exit 0. Read back with
``read_committed``: every valid record is out exactly once, every hostile record
is accounted for exactly once, either passed (the corpus says which) or in the
dead-letter topic with the expected reason, its original bytes (a prefix, the
size and SHA-256 when the dead letter had to be truncated) and its source
position; nothing else is written. This is where the records cross from the JVM
(the Kafka source and the key computed in SQL) into Python, which the unit tests
of the pure cores cannot see.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hostile_corpus import MAX_RECORD_BYTES, PASS, cases_for

from onceflow.operators.dedup.identity import IdentitySpec, identity_of
from onceflow.operators.records import (
    DEAD_LETTER_MAX_BYTES,
    Parsed,
    parse_dead_letter,
    parse_object,
)
from onceflow.operators.versioned.core import ChangeEvent, parse_change
from onceflow.operators.versioned.output import applied_value
from onceflow.testing.changes_check import read_outputs
from onceflow.testing.drain import ConsumedRecord, read_committed
from onceflow.testing.harness import run_to_end
from onceflow.testing.recovery import send

Interleaved = list[tuple[str, bytes | None, str]]


def _interleave(job: str, control: Callable[[int], bytes]) -> Interleaved:
    """The corpus of ``job`` with a valid control record before each case and at the end."""
    records: Interleaved = []
    for n, (name, raw, expect) in enumerate(cases_for(job)):
        records.append((f"control-{n}", control(n), PASS))
        records.append((name, raw, expect))
    records.append(("control-last", control(10_000), PASS))
    return records


def _run(module: str, args: list[str], records: Interleaved, bootstrap: str, topic: str) -> None:
    # Keyed by case name: Kafka needs a key to carry a null value (the tombstone case).
    send(bootstrap, topic, [(name.encode(), raw) for name, raw, _ in records])
    job = run_to_end(module, [*args, "--bounded", "--max-record-bytes", str(MAX_RECORD_BYTES)], 420)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-5000:]


def _digest(raw: bytes | None) -> str:
    return "null" if raw is None else hashlib.sha256(raw).hexdigest()


def _check_dead_letters(records: Interleaved, dlq: list[ConsumedRecord], topic: str) -> None:
    """Each dead-letter case once, with its reason, its bytes and its source; nothing else."""
    hostile = [(name, raw, expect) for name, raw, expect in records if expect != PASS]
    by_digest = {_digest(raw): (name, raw, expect) for name, raw, expect in hostile}
    assert len(by_digest) == len(hostile), "two dead-letter cases share their bytes"
    found: Counter[str] = Counter()
    wrong: list[str] = []
    for rec in dlq:
        assert rec.value is not None and len(rec.value) <= DEAD_LETTER_MAX_BYTES
        letter = parse_dead_letter(rec.value)
        original = letter["original_bytes"]
        name, raw, expect = by_digest[letter["original_sha256"] or "null"]
        found[name] += 1
        if letter["reason"] != expect:
            wrong.append(f"{name}: {letter['reason']} ({letter['detail']}), expected {expect}")
        assert letter["source"]["topic"] == topic
        assert rec.key == f"{topic}/0/{letter['source']['offset']}".encode()
        if raw is None:
            assert original is None
        elif letter["truncated"]:
            assert original is not None and raw.startswith(original) and len(original) > 500_000
            assert letter["original_size"] == len(raw)
        else:
            assert original == raw
    assert not wrong, "\n".join(wrong)
    missing = sorted({name for name, *_ in by_digest.values()} - set(found))
    assert not missing, f"dead letters missing for {missing}"
    assert set(found.values()) == {1}, {n: c for n, c in found.items() if c != 1}


def test_dedup_job_passes_or_dead_letters_every_hostile_class_exactly_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    records = _interleave("dedup", lambda n: b'{"id":"ctl-%d"}' % n)
    args = [
        *("--bootstrap", kafka_bootstrap, "--input-topic", topics["in"]),
        *("--output-topic", topics["out"], "--dlq-topic", topics["dlq"]),
        *("--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("g")),
    ]
    _run("onceflow.jobs.dedup", args, records, kafka_bootstrap, topics["in"])

    expected: Counter[tuple[bytes | None, bytes | None]] = Counter()
    for _, raw, expect in records:
        if expect == PASS:
            parsed = parse_object(raw, MAX_RECORD_BYTES)
            assert isinstance(parsed, Parsed)
            ident = identity_of(parsed.value, IdentitySpec.by_id("id"))
            assert isinstance(ident, str)
            expected[(ident[2:].encode(), raw)] += 1
    out = read_committed(kafka_bootstrap, topics["out"], quiet_ms=1500, progress=False)
    got = Counter((rec.key, rec.value) for rec in out)
    assert got == expected, (
        f"unexpected: {[k for k in got - expected][:5]}; missing: {[k for k in expected - got][:5]}"
    )
    dlq = read_committed(kafka_bootstrap, topics["dlq"], quiet_ms=1500, progress=False)
    _check_dead_letters(records, dlq, topics["in"])


def test_versioned_job_passes_or_dead_letters_every_hostile_class_exactly_once(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = {name: topic_factory(name) for name in ("in", "applied", "stale", "conflict", "dlq")}
    changes = tmp_path / "changes"
    records = _interleave("versioned", lambda n: b'{"key":"ctl-%d","version":1,"payload":{}}' % n)
    args = [
        *("--bootstrap", kafka_bootstrap, "--input-topic", topics["in"]),
        *("--applied-topic", topics["applied"], "--stale-topic", topics["stale"]),
        *("--conflict-topic", topics["conflict"], "--dlq-topic", topics["dlq"]),
        *("--changes-path", str(changes)),
        *("--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("g")),
    ]
    _run("onceflow.jobs.versioned_upsert", args, records, kafka_bootstrap, topics["in"])

    applied: Counter[tuple[bytes | None, bytes | None]] = Counter()
    rows: Counter[tuple[str, int]] = Counter()
    for _, raw, expect in records:
        if expect == PASS:
            parsed = parse_object(raw, MAX_RECORD_BYTES)
            assert isinstance(parsed, Parsed)
            event = parse_change(parsed.value)
            assert isinstance(event, ChangeEvent)
            applied[(event.key.encode(), applied_value(event))] += 1
            rows[(event.key, event.version)] += 1
    outputs = read_outputs(kafka_bootstrap, topics, changes, quiet_ms=1500)
    got = Counter((rec.key, rec.value) for rec in outputs.topics["applied"])
    assert got == applied, (
        f"unexpected: {[k for k in got - applied][:5]}; missing: {[k for k in applied - got][:5]}"
    )
    assert outputs.topics["stale"] == [] and outputs.topics["conflict"] == []
    assert Counter((row["key"], row["version"]) for row in outputs.rows) == rows
    _check_dead_letters(records, outputs.topics["dlq"], topics["in"])

"""The versioned upsert job on Avro (``--format avro``), one bounded run, exact outputs.

Change events are flat Avro records ``key, version, op, name, qty`` (the whole record
is the payload). Per entity key the workload sends, in order: v1, v2 (applied), v1 again
(stale), v2 with other content (conflict), v2 again byte-identical (a repeat: dropped),
and every third key a v3 delete (applied: a tombstone); plus hostile values (dead
letters with their Avro reason). The outputs, read_committed, are compared with what
``newer_wins`` must give, exactly (multisets).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onceflow.avro.registry import SchemaRegistry
from onceflow.avro.wire import AvroDecoder, AvroEncoder, Decoded
from onceflow.testing.drain import read_committed
from onceflow.testing.harness import JobProcess, run_to_end
from onceflow.testing.recovery import (
    Phases,
    ScenarioLog,
    retry_until_replayed,
    run_kill_and_recover,
    send,
)

# About 75 s under load (one bounded run): `make test-slow`, to keep `make test` in budget.
pytestmark = [pytest.mark.it, pytest.mark.slow]

CHANGE = {
    "type": "record",
    "name": "ItemChange",
    "namespace": "dev.onceflow.it",
    "fields": [
        {"name": "key", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "op", "type": ["null", "string"], "default": None},
        {"name": "name", "type": "string"},
        {"name": "qty", "type": "long"},
    ],
}
KEYS = 40
RECOVERY_KEYS = 400


def _event(key: int, version: int, op: str | None = None, qty: int = 0) -> dict[str, Any]:
    return {"key": f"k{key:03d}", "version": version, "op": op, "name": f"n{key}", "qty": qty}


Expected = tuple[
    list[dict[str, Any]],
    list[tuple[str, dict[str, Any] | None]],
    list[tuple[str, int]],
    list[tuple[str, int]],
]


def _workload(keys: int) -> Expected:
    """The events sent and the applied records, stale and conflict reports they must give."""
    sent: list[dict[str, Any]] = []
    applied: list[tuple[str, dict[str, Any] | None]] = []
    stale: list[tuple[str, int]] = []
    conflicts: list[tuple[str, int]] = []
    for k in range(keys):
        v1, v2 = _event(k, 1, qty=1), _event(k, 2, "upsert", qty=2)
        sent += [v1, v2, v1, {**v2, "qty": 99}, v2]
        applied += [(v1["key"], v1), (v2["key"], v2)]
        stale.append((v1["key"], 1))
        conflicts.append((v2["key"], 2))
        if k % 3 == 0:
            sent.append(_event(k, 3, "delete"))
            applied.append((v1["key"], None))
    return sent, applied, stale, conflicts


def _outputs(
    bootstrap: str, registry: SchemaRegistry, topics: dict[str, str]
) -> tuple[
    Counter[tuple[str | None, str]],
    Counter[tuple[str, int]],
    Counter[tuple[str, int]],
    Counter[str],
]:
    """Applied records, stale and conflict reports, DLQ reasons, read_committed."""
    out = {n: read_committed(bootstrap, topics[n], quiet_ms=1500, progress=False)
           for n in ("applied", "stale", "conflict", "dlq")}  # fmt: skip
    decoder = AvroDecoder.from_registry(registry)

    def applied_value(value: bytes | None) -> dict[str, Any] | None:
        if value is None:
            return None
        decoded = decoder.decode(value)
        assert isinstance(decoded, Decoded), decoded
        return dict(decoded.record)

    applied = Counter(
        (r.key.decode() if r.key else None, json.dumps(applied_value(r.value), sort_keys=True))
        for r in out["applied"]
    )

    def reports(kind: str) -> Counter[tuple[str, int]]:
        docs = [json.loads(r.value or b"{}") for r in out[kind]]
        assert all(d["outcome"] == kind for d in docs), docs[:2]
        return Counter((d["event"]["key"], d["event"]["version"]) for d in docs)

    reasons = Counter(str(json.loads(r.value or b"{}").get("reason")) for r in out["dlq"])
    return applied, reports("stale"), reports("conflict"), reasons


def _expected_applied(applied: list[tuple[str, dict[str, Any] | None]]) -> Counter[Any]:
    return Counter((k, json.dumps(v, sort_keys=True)) for k, v in applied)


def test_avro_versioned_upsert_bounded_run_writes_exactly_the_expected_outputs(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    names = ("in", "applied", "stale", "conflict", "dlq")
    topics = {name: topic_factory(name) for name in names}
    registry = SchemaRegistry(schema_registry_url)
    encoder = AvroEncoder(CHANGE, registry.register(f"{topics['in']}-value", CHANGE))

    sent, applied, stale, conflicts = _workload(KEYS)
    records = [(e["key"].encode(), encoder.encode(e)) for e in sent]
    hostile = [b'{"key": "k"}', b"\x00\x00", b"\x00" + b"\x7f\xff\xff\xf0" + b"\x02"]  # 3 classes
    records += [(b"bad", value) for value in hostile]
    send(kafka_bootstrap, topics["in"], records)

    args = ["--bootstrap", kafka_bootstrap, "--format", "avro"]
    args += ["--registry-url", schema_registry_url, "--bounded"]
    args += ["--input-topic", topics["in"], "--applied-topic", topics["applied"]]
    args += ["--stale-topic", topics["stale"], "--conflict-topic", topics["conflict"]]
    args += ["--dlq-topic", topics["dlq"], "--changes-path", str(tmp_path / "changes")]
    args += ["--transactional-id-prefix", unique_name("tx"), "--checkpoint-interval-ms", "1000"]
    job = run_to_end("onceflow.jobs.versioned_upsert", args, timeout=420)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]

    got_applied, got_stale, got_conflicts, reasons = _outputs(kafka_bootstrap, registry, topics)
    assert got_applied == _expected_applied(applied)
    assert got_stale == Counter(stale)
    assert got_conflicts == Counter(conflicts)
    assert reasons == {"bad_magic": 1, "not_framed": 1, "unknown_schema": 1}
    latest = registry.latest(f"{topics['applied']}-value")
    assert latest is not None and json.loads(latest.schema.text) == CHANGE


def _recovery(
    guarantee: str,
    bootstrap: str,
    registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> tuple[ScenarioLog, Any]:
    names = ("in", "applied", "stale", "conflict", "dlq")
    topics = {name: topic_factory(name) for name in names}
    registry = SchemaRegistry(registry_url)
    encoder = AvroEncoder(CHANGE, registry.register(f"{topics['in']}-value", CHANGE))
    sent, applied, stale, conflicts = _workload(RECOVERY_KEYS)
    records = [(e["key"].encode(), encoder.encode(e)) for e in sent]
    # An event is applied iff it is the first arrival of its (key, version) with its content.
    first: set[tuple[str, int]] = set()
    applied_flags = []
    for e in sent:
        kv = (e["key"], e["version"])
        applied_flags.append(kv not in first)
        first.add(kv)
    split = int(len(sent) * 0.4)
    poison = next(i for i in range(int(len(sent) * 0.7), len(sent)) if applied_flags[i])
    phases = Phases(
        a=records[:split],
        b=records[split:poison],
        c=records[poison:],
        a_outputs=sum(applied_flags[:split]),
        ab_outputs=sum(applied_flags[:poison]),
        total_outputs=len(applied),
    )
    args = ["--bootstrap", bootstrap, "--format", "avro", "--registry-url", registry_url]
    args += ["--guarantee", guarantee]
    args += ["--input-topic", topics["in"], "--applied-topic", topics["applied"]]
    args += ["--stale-topic", topics["stale"], "--conflict-topic", topics["conflict"]]
    args += ["--dlq-topic", topics["dlq"], "--changes-path", str(tmp_path / "changes")]
    args += ["--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("g")]
    # Long enough that no checkpoint completes between phase B and the poison (under load).
    args += ["--checkpoint-interval-ms", "10000"]
    args += ["--fail-on-change", f"{sent[poison]['key']}@{sent[poison]['version']}"]
    args += ["--fail-marker-dir", str(tmp_path / "faults")]
    job = JobProcess("onceflow.jobs.versioned_upsert", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["applied"], phases)
    assert list((tmp_path / "faults").glob("*.fired")), "the injected failure never fired"
    assert story.restarts >= 1, story.render()
    got = _outputs(bootstrap, registry, topics)
    expected: tuple[Counter[Any], ...] = (
        _expected_applied(applied),
        Counter(stale),
        Counter(conflicts),
        Counter(),
    )
    return story, (got, expected)


def test_avro_versioned_upsert_recovers_exactly_once_after_injected_failure(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    story, (got, expected) = retry_until_replayed(
        lambda n: _recovery("exactly-once", kafka_bootstrap, schema_registry_url,
                            topic_factory, unique_name, tmp_path / f"{n}"),
        story_of=lambda outcome: outcome[0],
    )  # fmt: skip
    for name, g, e in zip(("applied", "stale", "conflict", "dlq"), got, expected, strict=True):
        assert g == e, f"{name}: missing {e - g}, unexpected {g - e}\n{story.render()}"


def test_avro_versioned_negative_control_at_least_once_shows_duplicates(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """The same run with at-least-once sinks: phase B's applied changes, replayed after
    the failure, are written again (the checks above can fail)."""
    story, (got, expected) = retry_until_replayed(
        lambda n: _recovery("at-least-once", kafka_bootstrap, schema_registry_url,
                            topic_factory, unique_name, tmp_path / f"{n}"),
        story_of=lambda outcome: outcome[0],
    )  # fmt: skip
    applied, want = got[0], expected[0]
    assert applied != want, story.render()
    assert not want - applied, f"at-least-once lost {want - applied}\n{story.render()}"
    assert any(count > want[item] for item, count in applied.items()), story.render()

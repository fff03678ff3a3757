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
from onceflow.testing.harness import run_to_end
from onceflow.testing.recovery import send

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


def _event(key: int, version: int, op: str | None = None, qty: int = 0) -> dict[str, Any]:
    return {"key": f"k{key:03d}", "version": version, "op": op, "name": f"n{key}", "qty": qty}


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

    sent: list[dict[str, Any]] = []
    applied: list[tuple[str, dict[str, Any] | None]] = []
    stale: list[tuple[str, int]] = []
    conflicts: list[tuple[str, int]] = []
    for k in range(KEYS):
        v1, v2 = _event(k, 1, qty=1), _event(k, 2, "upsert", qty=2)
        sent += [v1, v2, v1, {**v2, "qty": 99}, v2]
        applied += [(v1["key"], v1), (v2["key"], v2)]
        stale.append((v1["key"], 1))
        conflicts.append((v2["key"], 2))
        if k % 3 == 0:
            sent.append(_event(k, 3, "delete"))
            applied.append((v1["key"], None))
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

    out = {n: read_committed(kafka_bootstrap, topics[n], quiet_ms=1500, progress=False)
           for n in names[1:]}  # fmt: skip
    decoder = AvroDecoder.from_registry(registry)

    def applied_value(value: bytes | None) -> dict[str, Any] | None:
        if value is None:
            return None
        decoded = decoder.decode(value)
        assert isinstance(decoded, Decoded), decoded
        return dict(decoded.record)

    got_applied = Counter(
        (r.key.decode() if r.key else None, json.dumps(applied_value(r.value), sort_keys=True))
        for r in out["applied"]
    )
    assert got_applied == Counter((k, json.dumps(v, sort_keys=True)) for k, v in applied)

    def reports(kind: str) -> Counter[tuple[str, int]]:
        docs = [json.loads(r.value or b"{}") for r in out[kind]]
        assert all(d["outcome"] == ("stale" if kind == "stale" else "conflict") for d in docs)
        return Counter((d["event"]["key"], d["event"]["version"]) for d in docs)

    assert reports("stale") == Counter(stale)
    assert reports("conflict") == Counter(conflicts)
    reasons = Counter(json.loads(r.value or b"{}").get("reason") for r in out["dlq"])
    assert reasons == {"bad_magic": 1, "not_framed": 1, "unknown_schema": 1}
    latest = registry.latest(f"{topics['applied']}-value")
    assert latest is not None and json.loads(latest.schema.text) == CHANGE

"""Schema evolution mid-stream: the Avro dedup job keeps running while its producer moves on.

The job starts with no ``--reader-schema``: it reads with the latest schema of
``<input>-value`` at start, v1 (``id, seq, ts, payload``), and writes its output with v1.
While it runs, the producer

1. writes records (and duplicates) with v1;
2. registers v2 (v1 plus ``note``, an optional string with a default: a BACKWARD and
   FORWARD compatible change) and writes more records with it: the job reads them as
   v1 (Avro schema resolution skips ``note``), no dead letter;
3. registers v3 under another subject (``seq`` a string: v1 cannot read it) and writes
   records with it: each is a dead letter ``incompatible_schema``, the job never fails.

The output, read_committed, is the exact multiset of first occurrences as v1 records,
and the DLQ holds exactly the v3 records.
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
from onceflow.testing.avro_workload import workload_schema
from onceflow.testing.drain import read_committed
from onceflow.testing.harness import JobProcess, count_values, wait_until
from onceflow.testing.recovery import send

# About 105 s (a streaming job that waits on committed output twice): `make test-slow`.
pytestmark = [pytest.mark.it, pytest.mark.slow]

V1 = workload_schema()
V2 = {
    **V1,
    "fields": [*V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
}
V3 = {**V1, "fields": [{**f, "type": "string"} if f["name"] == "seq" else f for f in V1["fields"]]}
PER_VERSION = 120  # distinct ids per schema version
DUPLICATES_EVERY = 4  # every 4th record is sent twice


def _v1(i: int) -> dict[str, Any]:
    return {"id": f"e-{i:05d}", "seq": i, "ts": 1_000 + i, "payload": f"p{i}"}


def _records(encoder: AvroEncoder, ids: range, extra: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for i in ids:
        value = encoder.encode({**_v1(i), **extra})
        out.append((f"e-{i:05d}".encode(), value))
        if i % DUPLICATES_EVERY == 0:
            out.append((f"e-{i:05d}".encode(), value))  # byte-identical duplicate
    return out


def test_avro_dedup_reads_an_evolved_writer_schema_and_dead_letters_an_incompatible_one(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    registry = SchemaRegistry(schema_registry_url)
    subject = f"{topics['in']}-value"
    v1 = AvroEncoder(V1, registry.register(subject, V1))

    args = ["--bootstrap", kafka_bootstrap, "--format", "avro"]
    args += ["--registry-url", schema_registry_url, "--checkpoint-interval-ms", "1000"]
    args += ["--input-topic", topics["in"], "--output-topic", topics["out"]]
    args += ["--dlq-topic", topics["dlq"], "--transactional-id-prefix", unique_name("tx")]
    args += ["--group-id", unique_name("group")]
    job = JobProcess("onceflow.jobs.dedup", args, tmp_path / "job.log").start()
    try:

        def committed(topic: str, n: int) -> Callable[[], bool]:
            def done() -> bool:
                assert job.alive(), job.log_tail()
                return len(count_values(kafka_bootstrap, topics[topic], timeout_s=2)) >= n

            return done

        send(kafka_bootstrap, topics["in"], _records(v1, range(PER_VERSION), {}))
        wait_until("the v1 records' output", committed("out", PER_VERSION), timeout=120)

        # The producer evolves while the job runs: v2 is registered now, after the start.
        v2 = AvroEncoder(V2, registry.register(subject, V2))
        evolved = range(PER_VERSION, 2 * PER_VERSION)
        send(kafka_bootstrap, topics["in"], _records(v2, evolved, {"note": "v2"}))
        v3 = AvroEncoder(V3, registry.register(unique_name("v3") + "-value", V3))
        broken = [
            (f"x-{i}".encode(), v3.encode({**_v1(i), "id": f"x-{i}", "seq": str(i)}))
            for i in range(20)
        ]
        send(kafka_bootstrap, topics["in"], broken)
        total = 2 * PER_VERSION
        wait_until("every record's output", committed("out", total), timeout=120)
        wait_until("the v3 dead letters", committed("dlq", len(broken)), timeout=60)
        assert job.alive(), job.log_tail()
    finally:
        job.stop()

    out = read_committed(kafka_bootstrap, topics["out"], quiet_ms=1500, progress=False)
    dlq = read_committed(kafka_bootstrap, topics["dlq"], quiet_ms=1500, progress=False)
    decoded = [AvroDecoder.from_registry(registry).decode(r.value) for r in out]
    assert all(isinstance(d, Decoded) for d in decoded), decoded[:3]
    records = Counter(json.dumps(d.record, sort_keys=True) for d in decoded)  # type: ignore[union-attr]
    expected = Counter(json.dumps(_v1(i), sort_keys=True) for i in range(2 * PER_VERSION))
    assert records == expected  # exact multiset: v2 records read as v1, each id once
    out_latest = registry.latest(f"{topics['out']}-value")
    assert out_latest is not None and json.loads(out_latest.schema.text) == V1
    letters = [json.loads(r.value or b"{}") for r in dlq]
    assert Counter(letter.get("reason") for letter in letters) == {
        "incompatible_schema": len(broken)
    }
    assert len({r.key for r in dlq}) == len(dlq)  # keyed by source position: each once

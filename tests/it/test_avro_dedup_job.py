"""The dedup job on Avro (``--format avro``) against the real broker and schema registry.

The Avro workload (Confluent-framed, duplicates byte-identical) with Avro-hostile records
of every class the workload makes (not_framed, bad_magic, unknown_schema, undecodable,
oversize) is fed around an injected failure after a completed checkpoint:

- exactly-once: the output, read_committed and decoded by its schema id, holds every
  distinct id once; the DLQ holds every hostile record once with its Avro reason; the
  output's writer schema is registered under ``<output>-value``.
- the same scenario with an at-least-once sink must show duplicates (the control).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from onceflow.avro.registry import SchemaRegistry
from onceflow.avro.wire import AvroDecoder, Decoded
from onceflow.testing.avro_workload import avro_items, workload_schema
from onceflow.testing.check import CheckReport, avro_id_of, check_output, compare_dead_letters
from onceflow.testing.drain import read_committed
from onceflow.testing.harness import JobProcess
from onceflow.testing.recovery import (
    Phases,
    ScenarioLog,
    retry_until_replayed,
    run_kill_and_recover,
)
from onceflow.testing.workload import Expectation, WorkloadSpec

# About 3.5 min (two kill-and-recover runs): `make test-slow`, not `make test`.
pytestmark = [pytest.mark.it, pytest.mark.slow]

MAX_RECORD_BYTES = 5_000  # the workload's oversize records (8,000 bytes) are over it


def _recovery(
    guarantee: str,
    bootstrap: str,
    registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> tuple[list[CheckReport], ScenarioLog, dict[str, object]]:
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    spec = WorkloadSpec(
        count=4_000, duplicate_ratio=0.3, malformed_ratio=0.02, seed=5,
        oversize_bytes=8_000, oversize_every=20,
    )  # fmt: skip
    registry = SchemaRegistry(registry_url)
    schema_id = registry.register(f"{topics['in']}-value", workload_schema())
    items = list(avro_items(spec, schema_id))
    exp = Expectation.collect(items, spec)
    assert set(exp.malformed_reasons) == {
        "not_framed", "bad_magic", "unknown_schema", "undecodable", "oversize"
    }  # fmt: skip
    poison = next(i for i in range(int(len(items) * 0.7), len(items)) if items[i].kind == "unique")
    split = int(len(items) * 0.4)
    records = [(it.ident.encode() if it.ident else None, it.value) for it in items]

    def uniques(upto: int) -> int:
        return sum(1 for it in items[:upto] if it.kind == "unique")

    phases = Phases(
        a=records[:split],
        b=records[split:poison],
        c=records[poison:],
        a_outputs=uniques(split),
        ab_outputs=uniques(poison),
        total_outputs=len(exp.unique_ids),
    )
    poison_id = items[poison].ident
    assert poison_id is not None
    args = ["--bootstrap", bootstrap, "--guarantee", guarantee]
    args += ["--input-topic", topics["in"], "--output-topic", topics["out"]]
    args += ["--dlq-topic", topics["dlq"], "--format", "avro", "--registry-url", registry_url]
    args += ["--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("group")]
    args += ["--max-record-bytes", str(MAX_RECORD_BYTES), "--checkpoint-interval-ms", "4000"]
    args += ["--fail-on-id", poison_id, "--fail-marker-dir", str(tmp_path / "faults")]
    job = JobProcess("onceflow.jobs.dedup", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["out"], phases)
    assert (tmp_path / "faults" / f"{poison_id}.fired").exists(), "the failure never fired"
    assert story.restarts >= 1, story.render()

    out = read_committed(bootstrap, topics["out"], quiet_ms=1500, progress=False)
    dlq = read_committed(bootstrap, topics["dlq"], quiet_ms=1500, progress=False)
    decoder = AvroDecoder.from_registry(SchemaRegistry(registry_url), workload_schema())
    reports = [
        check_output(exp.unique_ids, out, id_of=avro_id_of(decoder)),
        compare_dead_letters(exp.malformed_values, dlq),
    ]
    latest = registry.latest(f"{topics['out']}-value")
    decoded = [decoder.decode(r.value) for r in out]
    facts: dict[str, object] = {
        "expected_reasons": Counter(exp.malformed_reasons),
        "dlq_reasons": Counter(json.loads(r.value or b"{}").get("reason") for r in dlq),
        "out_schema_ids": {d.schema_id for d in decoded if isinstance(d, Decoded)},
        "registered_out_id": None if latest is None else latest.schema.schema_id,
        "keys_match": all(
            isinstance(d, Decoded) and r.key is not None and r.key.decode() == d.record["id"]
            for r, d in zip(out, decoded, strict=True)
        ),
    }
    return reports, story, facts


def _replayed(
    guarantee: str,
    bootstrap: str,
    registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> tuple[list[CheckReport], ScenarioLog, dict[str, object]]:
    """The scenario, retried until the restart really replayed phase B."""
    return retry_until_replayed(
        lambda n: _recovery(
            guarantee, bootstrap, registry_url, topic_factory, unique_name, tmp_path / f"{n}"
        ),
        story_of=lambda outcome: outcome[1],
    )


def test_avro_dedup_recovers_exactly_once_with_avro_dead_letters(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    reports, story, facts = _replayed(
        "exactly-once", kafka_bootstrap, schema_registry_url, topic_factory, unique_name, tmp_path
    )
    for report in reports:
        assert report.ok, f"{report.render()}\n{story.render()}"
    assert facts["dlq_reasons"] == facts["expected_reasons"], facts
    # The output is Avro of the schema registered under <output>-value, keyed by id.
    assert facts["out_schema_ids"] == {facts["registered_out_id"]}, facts
    assert facts["keys_match"] is True


def test_avro_negative_control_at_least_once_shows_duplicates(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    reports, story, _ = _replayed(
        "at-least-once", kafka_bootstrap, schema_registry_url, topic_factory, unique_name, tmp_path
    )
    output = reports[0]
    assert output.duplicated > 0, f"the checker saw no duplicates:\n{story.render()}"
    assert output.missing == 0 and output.unexpected == 0 and output.invalid == 0, output.render()

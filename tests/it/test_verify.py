"""The verifier's shortened profile on a real cluster: every fault kind once for the
dedup job; the versioned job with its PostgreSQL table and the at-least-once control
on a shorter run with the kinds named in each test (the versioned job on Kafka alone
and the dedup job on Avro: make test-slow; every kind for each: ``make verify``).

Exactly-once must hold for both jobs; the faults that replay with an at-least-once
sink must be reported as duplicates (proof that the verifier can fail). The
versioned job's checks (onceflow.testing.changes_check) are the ones its own
kill-and-recover IT uses, whose at-least-once control shows they can fail too.
The PostgreSQL target adds its table check (each key's row is the oracle's final
state; no prepared transaction left) and the PostgreSQL faults; the table check's
own IT (tests/it/test_postgres_sink.py) has the at-least-once control.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from onceflow.verify.faults import FAULT_KINDS, PROFILES
from onceflow.verify.report import plot, summary
from onceflow.verify.runner import VerifyResult, VerifySettings, verify


def _run(
    guarantee: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    job: str = "dedup",
    kinds: tuple[str, ...] | None = None,
) -> tuple[VerifyResult, str]:
    assert kafka_bootstrap  # the session broker is up (the verifier restarts it)
    profile = PROFILES["ci"]
    if kinds is not None:
        profile = dataclasses.replace(profile, records=20_000, faults=len(kinds))
    settings = VerifySettings(
        profile=profile, job=job, guarantee=guarantee, seed=4, out_dir=tmp_path, kinds=kinds
    )
    result = verify(settings, progress=False)
    png = plot(result, tmp_path / "verify.png")
    assert png.stat().st_size > 10_000
    return result, summary(result)


def test_exactly_once_holds_under_every_fault_kind(kafka_bootstrap: str, tmp_path: Path) -> None:
    result, text = _run("exactly-once", tmp_path, kafka_bootstrap)
    assert {f["kind"] for f in result.faults} == set(FAULT_KINDS), text
    assert all(f.get("fired", True) for f in result.faults), text
    assert result.ok, text
    counts = result.counts
    assert counts["output_committed"] == counts["expected_output"], text
    assert counts["jobs_submitted"] == 3 and counts["checkpoints_completed"] > 0, text


def test_at_least_once_under_the_same_faults_is_reported_as_duplicates(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The faults that make Flink replay from a checkpoint, on a shorter run: the sink
    # then writes the replayed records again.
    kinds = ("tm-kill", "operator-exception")
    result, text = _run("at-least-once", tmp_path, kafka_bootstrap, kinds=kinds)
    assert sorted(f["kind"] for f in result.faults) == sorted(kinds), text
    anomalies = result.anomalies
    assert anomalies["duplicate"] > 0, text
    assert anomalies["lost"] == 0, text
    assert not result.ok


@pytest.mark.slow  # ~150 s: make test-slow; make test runs the versioned job with its table below
def test_versioned_upsert_exactly_once_holds_under_every_fault_kind(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The kinds that reach the versioned operator's state and its outputs' transactions
    # differently from the dedup job's run above; every kind: `make verify JOB=...`.
    kinds = ("tm-kill", "operator-exception", "savepoint-resume", "broker-kill")
    result, text = _run(
        "exactly-once", tmp_path, kafka_bootstrap, job="versioned-upsert", kinds=kinds
    )
    assert sorted(f["kind"] for f in result.faults) == sorted(kinds), text
    assert all(f.get("fired", True) for f in result.faults), text
    assert result.ok, text
    counts = result.counts
    assert counts["output_committed"] == counts["expected_output"] > 0, text
    assert counts["parquet_rows"] == counts["expected_output"], text
    assert counts["stale"] > 0 and counts["conflict"] > 0, text


def test_versioned_upsert_postgres_exactly_once_holds_under_the_postgres_faults(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The short run: 20,000 records, the two database faults, an operator exception and a
    # TaskManager kill (the versioned job's run under every kind is in make test-slow).
    kinds = ("postgres-kill", "postgres-restart-prepared", "operator-exception", "tm-kill")
    assert kafka_bootstrap
    settings = VerifySettings(
        profile=dataclasses.replace(PROFILES["ci"], records=20_000, faults=len(kinds)),
        job="versioned-upsert-postgres",
        seed=4,
        out_dir=tmp_path,
        kinds=kinds,
    )
    result = verify(settings, progress=False)
    text = summary(result)
    assert sorted(f["kind"] for f in result.faults) == sorted(kinds), text
    assert all(f.get("fired", True) for f in result.faults), text
    assert result.ok, text
    counts = result.counts
    assert counts["output_committed"] == counts["expected_output"] > 0, text


@pytest.mark.slow  # ~3 min: `make test-slow`
def test_dedup_on_avro_exactly_once_holds_under_the_faults(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``onceflow verify --format avro``: the same workload Confluent-framed, Avro's own
    dead-letter classes, the output decoded through the registry."""
    monkeypatch.setenv("ONCEFLOW_REGISTRY_URL", schema_registry_url)
    kinds = ("tm-kill", "operator-exception", "broker-kill")
    settings = VerifySettings(
        profile=dataclasses.replace(PROFILES["ci"], records=20_000, faults=len(kinds)),
        job="dedup", seed=4, out_dir=tmp_path, kinds=kinds, value_format="avro",
    )  # fmt: skip
    assert kafka_bootstrap
    result = verify(settings, progress=False)
    text = summary(result)
    assert sorted(f["kind"] for f in result.faults) == sorted(kinds), text
    assert result.ok, text
    counts = result.counts
    assert counts["output_committed"] == counts["expected_output"] > 0, text
    assert counts["dead_letters"] == counts["expected_dead_letters"] > 0, text

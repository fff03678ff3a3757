"""The dedup job end to end on the mini-cluster against the real broker.

- 100k records with 30% duplicates and 1% malformed: the output holds every
  distinct valid id once, the DLQ every malformed record once.
- Kill and recover: a failure injected after a completed checkpoint; the output
  is still exact (read_committed, exact multisets).
- Negative control: the same failure with an at-least-once sink must show
  duplicates, or the recovery test could not see a violation either.

The job's default dedup path is the JVM one (Flink's own deduplication); the
recovery test also runs the Python path (``--dedup-path python``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from onceflow.operators.records import stable_hash
from onceflow.testing.check import CheckReport, check_output, compare_dead_letters
from onceflow.testing.drain import read_committed
from onceflow.testing.harness import JobProcess, run_to_end
from onceflow.testing.produce import produce
from onceflow.testing.recovery import (
    Phases,
    ScenarioLog,
    retry_until_replayed,
    run_kill_and_recover,
)
from onceflow.testing.workload import Expectation, WorkloadSpec, generate


def _job_args(
    bootstrap: str, topics: dict[str, str], unique_name: Callable[[str], str], guarantee: str
) -> list[str]:
    return [
        "--bootstrap",
        bootstrap,
        "--input-topic",
        topics["in"],
        "--output-topic",
        topics["out"],
        "--dlq-topic",
        topics["dlq"],
        "--transactional-id-prefix",
        unique_name("tx"),
        "--group-id",
        unique_name("group"),
        "--guarantee",
        guarantee,
    ]


def _reports(bootstrap: str, topics: dict[str, str], exp: Expectation) -> list[CheckReport]:
    out = read_committed(bootstrap, topics["out"], quiet_ms=1500, progress=False)
    dlq = read_committed(bootstrap, topics["dlq"], quiet_ms=1500, progress=False)
    return [check_output(exp.unique_ids, out), compare_dead_letters(exp.malformed_values, dlq)]


@pytest.mark.slow  # ~55 s; the kill-and-recover ITs below and the verifier cover the same path
def test_dedup_100k_records_exactly_once_with_dlq(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = {name: topic_factory(name, partitions=2) for name in ("in", "out", "dlq")}
    spec = WorkloadSpec(
        count=100_000,
        duplicate_ratio=0.3,
        malformed_ratio=0.01,
        seed=7,
        oversize_bytes=600_000,
    )
    exp = produce(kafka_bootstrap, topics["in"], spec, tmp_path / "expect.json", progress=False)
    assert len(exp.unique_ids) == 69_000 and exp.malformed == 1_000

    args = [
        *_job_args(kafka_bootstrap, topics, unique_name, "exactly-once"),
        "--parallelism",
        "2",
        "--bounded",
    ]
    job = run_to_end("onceflow.jobs.dedup", args, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    for report in _reports(kafka_bootstrap, topics, exp):
        assert report.ok, report.render()


def _recovery(
    guarantee: str,
    bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    dedup_path: str,
) -> tuple[list[CheckReport], ScenarioLog]:
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    # By fingerprint a record without an id is content like any other: no malformed ones
    # (the differential test covers a fingerprint's dead letters). The duplicates are
    # byte-identical copies, so the same records pass by fingerprint as by id.
    fingerprint = dedup_path.endswith("-fingerprint")
    spec = WorkloadSpec(
        count=6_000,
        duplicate_ratio=0.3,
        malformed_ratio=0.0 if fingerprint else 0.01,
        seed=11,
        oversize_every=0,
    )
    items = list(generate(spec))
    exp = Expectation.collect(items, spec)
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
    if fingerprint:  # the operator's key, where the failure is armed: the fingerprint
        poison_id = stable_hash(json.loads(items[poison].value))
    args = [
        *_job_args(bootstrap, topics, unique_name, guarantee),
        "--checkpoint-interval-ms",
        "4000",
        "--fail-on-id",
        poison_id,
        "--fail-marker-dir",
        str(tmp_path / "faults"),
        "--dedup-path",
        dedup_path.removesuffix("-fingerprint"),
        *(["--fingerprint"] if fingerprint else []),
    ]
    job = JobProcess("onceflow.jobs.dedup", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["out"], phases)
    assert (tmp_path / "faults" / f"{poison_id}.fired").exists(), "the failure never fired"
    assert story.restarts >= 1, story.render()
    return _reports(bootstrap, topics, exp), story


def _replayed_recovery(
    guarantee: str,
    bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    dedup_path: str = "auto",
) -> tuple[list[CheckReport], ScenarioLog]:
    """The scenario, retried until the restart really replayed phase B."""
    return retry_until_replayed(
        lambda n: _recovery(
            guarantee, bootstrap, topic_factory, unique_name, tmp_path / f"{n}", dedup_path
        ),
        story_of=lambda outcome: outcome[1],
    )


@pytest.mark.parametrize(
    "dedup_path",
    # The Python path: make test-slow, for make test's time budget.
    ["jvm", "jvm-fingerprint", pytest.param("python", marks=pytest.mark.slow)],
)
def test_dedup_recovers_exactly_once_after_injected_failure(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    dedup_path: str,
) -> None:
    reports, story = _replayed_recovery(
        "exactly-once", kafka_bootstrap, topic_factory, unique_name, tmp_path, dedup_path
    )
    for report in reports:
        assert report.ok, f"{report.render()}\n{story.render()}"


def test_negative_control_at_least_once_shows_duplicates(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    reports, story = _replayed_recovery(
        "at-least-once", kafka_bootstrap, topic_factory, unique_name, tmp_path
    )
    output = reports[0]
    assert output.duplicated > 0, f"the checker saw no duplicates:\n{story.render()}"
    assert output.missing == 0 and output.unexpected == 0, output.render()

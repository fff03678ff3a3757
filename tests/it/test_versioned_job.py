"""The versioned upsert job end to end on the mini-cluster against the real broker.

Input: a deterministic change workload (:mod:`onceflow.testing.changes`) with shuffled,
duplicated, conflicting and malformed records; the oracle is computed from the
records' bytes in arrival order with the pure core.

- Kill and recover (``newer_wins``): a failure injected after a completed
  checkpoint; the Parquet log holds each applied (key, version) once, the
  applied topic each applied change once and the highest version per key last
  (a tombstone for deleted keys), the stale/conflict/DLQ topics exactly the
  expected records; no in-progress file is read as data.
- Negative control: the same failure with at-least-once Kafka sinks must show
  duplicates on the applied topic (the FileSink stays exactly-once).
- Bounded run (``compare_and_set``, 2 partitions, parallelism 2, state TTL on,
  the job creates its output topics): exact outputs, the applied topic compacted.

Compaction never runs during these tests (the applied topic's data stays in its
active segment, and ``min.compaction.lag.ms`` is an hour where the test
creates it), so the applied topic still holds every applied change: that is
what lets the exactly-once check see duplicates. The latest value per key is
taken as the last record per key, which is what compaction would keep.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from onceflow.operators.versioned.core import COMPARE_AND_SET, NEWER_WINS
from onceflow.runtime.topics import cleanup_policy, partition_count
from onceflow.sinks.files import committed_files
from onceflow.testing.changes import (
    ChangeItem,
    ChangeOracle,
    ChangeWorkloadSpec,
    expected_changes,
    generate_changes,
)
from onceflow.testing.changes_check import compare_outputs, read_outputs
from onceflow.testing.check import CheckReport
from onceflow.testing.harness import JobProcess, run_to_end
from onceflow.testing.recovery import (
    Phases,
    ScenarioLog,
    retry_until_replayed,
    run_kill_and_recover,
    send,
)

log = logging.getLogger(__name__)

# Compacted, but the cleaner leaves the test's records alone (see the module docstring).
APPLIED_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"}
# FileSink names (--changes-part-prefix changes), or the filesystem connector's (field buckets).
COMMITTED_NAME = re.compile(r"^(changes-[0-9a-f-]{36}-\d+\.parquet|part-[0-9a-f-]{36}-\d+-\d+)$")
HIDDEN_NAME = re.compile(
    r"^\.(changes-[0-9a-f-]{36}-\d+\.parquet|part-[0-9a-f-]{36}-\d+-\d+)\.inprogress\.[0-9a-f-]+$"
)
#: --changes-bucketing flags: FileSink (no folders), and field buckets (filesystem connector).
BUCKETINGS = {
    "file-sink": ["--changes-bucketing", "none"],
    "field-buckets": ["--changes-bucketing", "field", "--changes-bucket-field", "op"],
}


def _topics(topic_factory: Callable[..., str], partitions: int = 1) -> dict[str, str]:
    topics = {name: topic_factory(name, partitions) for name in ("in", "stale", "conflict", "dlq")}
    topics["applied"] = topic_factory("applied", partitions, APPLIED_TOPIC_CONFIG)
    return topics


def _job_args(
    bootstrap: str,
    topics: dict[str, str],
    changes: Path,
    unique_name: Callable[[str], str],
    guarantee: str,
    mode: str,
) -> list[str]:
    return [
        "--bootstrap",
        bootstrap,
        "--input-topic",
        topics["in"],
        "--applied-topic",
        topics["applied"],
        "--stale-topic",
        topics["stale"],
        "--conflict-topic",
        topics["conflict"],
        "--dlq-topic",
        topics["dlq"],
        "--changes-path",
        str(changes),
        "--mode",
        mode,
        "--transactional-id-prefix",
        unique_name("tx"),
        "--group-id",
        unique_name("group"),
        "--guarantee",
        guarantee,
    ]


def _file_listing(changes: Path) -> tuple[list[str], list[str]]:
    names = [p for p in changes.rglob("*") if p.is_file()]
    hidden = sorted(p.name for p in names if p.name.startswith("."))
    visible = sorted(str(p) for p in names if not p.name.startswith("."))
    return visible, hidden


def _check_outputs(
    bootstrap: str, topics: dict[str, str], changes: Path, oracle: ChangeOracle
) -> tuple[dict[str, CheckReport], list[str]]:
    """Exact multiset reports of every output, and the hidden files that were not read."""
    # Parquet: only committed part files are read; hidden ones are in-progress or abandoned.
    visible, hidden = _file_listing(changes)
    files = committed_files(changes)
    assert files == visible, f"read {files}, but the listing shows {visible}"
    assert files and all(COMMITTED_NAME.match(Path(f).name) for f in files), files
    assert all(HIDDEN_NAME.match(name) for name in hidden), hidden
    reports = compare_outputs(oracle, read_outputs(bootstrap, topics, changes))
    return reports, hidden


def _workload() -> list[ChangeItem]:
    spec = ChangeWorkloadSpec(changes=2400, keys=60, seed=17, shuffle_window=8)
    return generate_changes(spec)


def _recovery(
    guarantee: str,
    bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    bucketing: str = "file-sink",
    path: str = "auto",
) -> tuple[dict[str, CheckReport], list[str], ScenarioLog, ChangeOracle]:
    topics = _topics(topic_factory)
    changes = tmp_path / "changes"
    items = _workload()
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    records = [(it.key, it.value) for it in items]
    split = int(len(items) * 0.4)
    # The poison is the first arrival of its (key, version): it fires in phase C, not before.
    seen: set[tuple[str | None, int | None]] = set()
    for i, it in enumerate(items):
        if (
            i >= int(len(items) * 0.7)
            and it.kind == "change"
            and (it.entity, it.version) not in seen
        ):
            poison = i
            break
        seen.add((it.entity, it.version))
    else:
        raise AssertionError("no poison candidate in the workload")
    phases = Phases(
        a=records[:split],
        b=records[split:poison],
        c=records[poison:],
        a_outputs=oracle.applied_before(split),
        ab_outputs=oracle.applied_before(poison),
        total_outputs=len(oracle.applied),
    )
    poison_item = items[poison]
    assert poison_item.entity is not None and poison_item.version is not None
    args = [
        *_job_args(bootstrap, topics, changes, unique_name, guarantee, NEWER_WINS),
        "--checkpoint-interval-ms",
        "3000",
        *BUCKETINGS[bucketing],
        "--fail-on-change",
        f"{poison_item.entity}@{poison_item.version}",
        "--fail-marker-dir",
        str(tmp_path / "faults"),
        "--versioned-path",
        path,
    ]
    job = JobProcess("onceflow.jobs.versioned_upsert", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["applied"], phases)
    assert list((tmp_path / "faults").glob("*.fired")), "the injected failure never fired"
    assert story.restarts >= 1, story.render()
    reports, hidden = _check_outputs(bootstrap, topics, changes, oracle)
    log.info(
        "%s: %d hidden files\n%s\n%s",
        guarantee,
        len(hidden),
        story.render(),
        "\n".join(r.render() for r in reports.values()),
    )
    return reports, hidden, story, oracle


def _replayed_recovery(
    guarantee: str,
    bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    bucketing: str = "file-sink",
    path: str = "auto",
) -> tuple[dict[str, CheckReport], list[str], ScenarioLog, ChangeOracle]:
    """The scenario, retried until the restart really replayed phase B."""
    return retry_until_replayed(
        lambda n: _recovery(
            guarantee, bootstrap, topic_factory, unique_name, tmp_path / f"{n}", bucketing, path
        ),
        story_of=lambda outcome: outcome[2],
    )


@pytest.mark.parametrize(
    ("bucketing", "path"),
    # Field buckets under recovery: make test-slow (their bounded run below is in make test).
    [pytest.param(b, "auto", marks=pytest.mark.slow) if b == "field-buckets" else (b, "auto")
     for b in sorted(BUCKETINGS)] + [("file-sink", "python")],
)  # fmt: skip
def test_versioned_upsert_recovers_exactly_once_after_injected_failure(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    bucketing: str,
    path: str,
) -> None:
    """On the JVM path (``auto``: the default) and on the Python path."""
    reports, hidden, story, oracle = _replayed_recovery(
        "exactly-once", kafka_bootstrap, topic_factory, unique_name, tmp_path, bucketing, path
    )
    assert len(oracle.stale) and len(oracle.conflicts) and oracle.repeats
    assert None in oracle.final.values(), "the workload should end with deleted keys"
    for report in reports.values():
        assert report.ok, f"{report.render()}\n{story.render()}"
    # Phase B's rows were in an in-progress file when the job failed: that file is
    # abandoned under its hidden name, and the exact Parquet match above never read it.
    assert hidden, f"no abandoned in-progress file after the failure:\n{story.render()}"


def test_negative_control_at_least_once_shows_duplicates_on_applied_topic(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    reports, _, story, _ = _replayed_recovery(
        "at-least-once", kafka_bootstrap, topic_factory, unique_name, tmp_path
    )
    applied = reports["applied"]
    assert applied.duplicated > 0, f"the checker saw no duplicates:\n{story.render()}"
    assert applied.missing == 0 and applied.unexpected == 0, applied.render()
    # The FileSink does not follow --guarantee: still no duplicate rows. (Rows of the
    # last checkpoint may be missing: at-least-once output is visible before its
    # checkpoint completes, so the harness may stop the job before the files commit.)
    parquet = reports["parquet"]
    assert parquet.duplicated == 0 and parquet.unexpected == 0, parquet.render()


def test_bounded_compare_and_set_run_creates_compacted_topic_and_writes_exactly(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = {"in": topic_factory("in", 2)}
    # The job creates these itself (--create-topics): the applied one compacted.
    topics |= {name: unique_name(name) for name in ("applied", "stale", "conflict", "dlq")}
    items = generate_changes(ChangeWorkloadSpec(changes=1500, keys=50, seed=23))
    send(kafka_bootstrap, topics["in"], [(it.key, it.value) for it in items])
    oracle = expected_changes([it.value for it in items], COMPARE_AND_SET)
    changes = tmp_path / "changes"
    args = [
        *_job_args(kafka_bootstrap, topics, changes, unique_name, "exactly-once", COMPARE_AND_SET),
        "--parallelism",
        "2",
        "--bounded",
        "--create-topics",
        # Far above the run's length: exercises Flink state TTL without changing outcomes.
        "--ttl-ms",
        "3600000",
    ]
    job = run_to_end("onceflow.jobs.versioned_upsert", args, timeout=240)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert cleanup_policy(kafka_bootstrap, topics["applied"]) == "compact"
    assert partition_count(kafka_bootstrap, topics["applied"]) == 2
    reports, _ = _check_outputs(kafka_bootstrap, topics, changes, oracle)
    for report in reports.values():
        assert report.ok, report.render()
    # Hourly datetime buckets by default: part files sit one folder below the base path.
    assert all(Path(f).parent.parent == changes for f in committed_files(changes))


def test_field_buckets_hold_each_applied_change_once_in_its_values_folder(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """``--changes-bucketing field``: the Table API filesystem sink, one folder per op."""
    topics = _topics(topic_factory)
    items = generate_changes(ChangeWorkloadSpec(changes=800, keys=30, seed=29))
    send(kafka_bootstrap, topics["in"], [(it.key, it.value) for it in items])
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    changes = tmp_path / "changes"
    args = [
        *_job_args(kafka_bootstrap, topics, changes, unique_name, "exactly-once", NEWER_WINS),
        "--bounded",
        "--changes-bucketing",
        "field",
        "--changes-bucket-field",
        "op",
    ]
    job = run_to_end("onceflow.jobs.versioned_upsert", args, timeout=240)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    files = committed_files(changes)
    assert {Path(f).parent.name for f in files} == {"op=upsert", "op=delete"}, files
    assert all(Path(f).name.startswith("part-") for f in files), files
    reports = compare_outputs(oracle, read_outputs(kafka_bootstrap, topics, changes))
    for report in reports.values():
        assert report.ok, report.render()

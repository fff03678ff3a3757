"""Rescaling and upgrading a running dedup job with ``onceflow cluster`` commands.

The session's standalone cluster (2 TaskManagers, 4 slots). The dedup job
runs at parallelism 2; ``onceflow cluster stop`` takes a savepoint; every id
seen so far is sent again with new ones; ``onceflow cluster submit
--from-savepoint --parallelism 3`` resumes it; again, down to parallelism 1, this
time with a changed dedup TTL (an upgrade of the job's settings under the same
uids). Read with read_committed after each stage and at the end: every id
exactly once (no re-emission after a rescale or an upgrade: the dedup state
moved with its key groups), no transaction left open, LSO = high watermark on
every output partition (read_committed readers not stalled).

Then the refusal: the smoke job (no ``dedup`` uid) submitted from the dedup
job's savepoint is refused with what to do, and runs with
``--allow-non-restored-state``.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer
from lifecycle import assert_no_transaction_left, onceflow_cli

from onceflow.local.cluster import LocalFlinkCluster
from onceflow.local.jobs import list_jobs
from onceflow.testing.drain import read_committed

STAGES = ((2, 300), (3, 200), (1, 200))  # (parallelism, new ids) per stage
DAY_MS = 24 * 3600 * 1000


def _send(bootstrap: str, topic: str, ids: range, seq: int) -> None:
    """Each id twice (a duplicate in the same batch), keyed by id."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for n in ids:
        for copy in range(2):
            value = json.dumps({"id": f"id-{n}", "seq": seq, "copy": copy}).encode()
            producer.send(topic, key=f"id-{n}".encode(), value=value)
    producer.flush()
    producer.close()


def _committed_ids(bootstrap: str, topic: str) -> collections.Counter[str]:
    records = read_committed(bootstrap, topic, quiet_ms=500, progress=False)
    return collections.Counter(json.loads(r.value or b"{}")["id"] for r in records)


def _wait_for(bootstrap: str, topic: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen: collections.Counter[str] = collections.Counter()
    while time.monotonic() < deadline:
        seen = _committed_ids(bootstrap, topic)
        if len(seen) >= count:
            return
        time.sleep(1)
    raise AssertionError(f"{len(seen)} of {count} ids committed within {timeout:.0f} s")


@pytest.fixture(scope="module")
def rescaled(flink_cluster: LocalFlinkCluster, kafka_bootstrap: str) -> dict[str, Any]:
    """Run the 2 -> 3 -> 1 scenario through the CLI; what each stage saw, for the tests."""
    import uuid

    from kafka import KafkaAdminClient

    stamp = uuid.uuid4().hex[:8]
    topics = {role: f"it_rescale_{role}_{stamp}" for role in ("in", "out", "dlq")}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        {t: {"num_partitions": 4 if r == "in" else 2, "replication_factor": 1}
         for r, t in topics.items()},
        wait_for_metadata=True,
    )  # fmt: skip
    admin.close()
    prefix = f"it-rescale-{stamp}"
    job_args = [
        "--bootstrap", kafka_bootstrap, "--input-topic", topics["in"],
        "--output-topic", topics["out"], "--dlq-topic", topics["dlq"],
        "--transactional-id-prefix", prefix, "--group-id", prefix,
        "--checkpoint-interval-ms", "1000", "--job-name", f"it-rescale-{stamp}",
        "--ttl-ms", str(DAY_MS),
    ]  # fmt: skip
    stages: list[dict[str, Any]] = []
    savepoint: str | None = None
    total = 0
    for n, (parallelism, new) in enumerate(STAGES):
        # Every id seen so far again, plus new ones (each twice).
        _send(kafka_bootstrap, topics["in"], range(total + new), seq=n)
        total += new
        resume = ["--from-savepoint", savepoint] if savepoint else []
        upgrade = ["--ttl-ms", str(2 * DAY_MS)] if n == len(STAGES) - 1 else []
        t0 = time.monotonic()
        code, job_id, err = onceflow_cli(
            "cluster", "submit", "jobs/dedup.py", "--detached", *resume,
            "--parallelism", str(parallelism), "--", *job_args, *upgrade,
        )  # fmt: skip
        assert code == 0, err
        t1 = time.monotonic()
        running = {j.job_id: j for j in list_jobs(flink_cluster.rest())}[job_id]
        _wait_for(kafka_bootstrap, topics["out"], total)
        t2 = time.monotonic()
        code, savepoint, err = onceflow_cli("cluster", "stop", job_id)
        assert code == 0 and savepoint.startswith("file:"), err
        t3 = time.monotonic()
        stages.append(
            {
                "parallelism": running.parallelism,
                "ids": _committed_ids(kafka_bootstrap, topics["out"]),
                "expected": total,
            }
        )
        # Where the time goes (shown with -s): submission to running tasks, to the
        # output caught up, and the stop with a savepoint.
        print(f"stage p{parallelism}: submit {t1 - t0:.1f} s, caught up {t2 - t1:.1f} s, "
              f"stop {t3 - t2:.1f} s")  # fmt: skip
    return {"topics": topics, "prefix": prefix, "stages": stages, "savepoint": savepoint}


def test_dedup_rescaled_2_3_1_and_upgraded_emits_every_id_exactly_once(
    rescaled: dict[str, Any], kafka_bootstrap: str
) -> None:
    stages = rescaled["stages"]
    assert [s["parallelism"] for s in stages] == [p for p, _ in STAGES]
    for stage in stages:
        ids = stage["ids"]
        # Nothing re-emitted after a rescale: old ids sent again were dropped.
        assert len(ids) == stage["expected"], stage["parallelism"]
        assert set(ids.values()) == {1}, [i for i, c in ids.items() if c > 1][:5]
    final = stages[-1]["ids"]
    assert set(final) == {f"id-{n}" for n in range(sum(new for _, new in STAGES))}

    # Nothing left open: the stops with a savepoint committed the last transactions.
    topics = rescaled["topics"]
    assert_no_transaction_left(
        kafka_bootstrap, rescaled["prefix"], list(topics.values()), {topics["out"]: 2}
    )


def test_a_savepoint_whose_operator_the_job_lacks_is_refused_with_what_to_do(
    rescaled: dict[str, Any],
    flink_cluster: LocalFlinkCluster,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
) -> None:
    # The smoke job has no `dedup` operator: the dedup state has nowhere to go. (That
    # --allow-non-restored-state reaches Flink as `-n` is a unit test: a second
    # submission here would cost ~25 s.)
    jobs_before = {j.job_id for j in list_jobs(flink_cluster.rest())}
    code, out, err = onceflow_cli(
        "cluster", "submit", "jobs/smoke.py", "--detached",
        "--from-savepoint", rescaled["savepoint"], "--",
        "--bootstrap", kafka_bootstrap, "--input-topic", rescaled["topics"]["in"],
        "--output-topic", unique_name("smoke"), "--transactional-id-prefix", unique_name("smoke"),
    )  # fmt: skip
    assert code == 2 and not out, err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "the savepoint holds state of operator" in line
    assert "an operator's uid was changed or removed" in line
    assert "--allow-non-restored-state" in line
    running = [j for j in list_jobs(flink_cluster.rest()) if j.job_id not in jobs_before]
    assert all(j.state in ("FAILED", "CANCELED") for j in running), running

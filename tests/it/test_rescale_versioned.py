"""Rescaling and upgrading a running versioned upsert job with ``onceflow cluster``.

The session's standalone cluster (2 TaskManagers, 4 slots). The job runs at
parallelism 2 with a one-day state TTL; ``onceflow cluster stop`` takes a
savepoint; every change sent so far is sent again (re-deliveries: each must be a
repeat or stale now, never applied twice) with new ones; it resumes at
parallelism 3 with a two-day TTL; stops again; then resumes at parallelism 1
with the TTL off. Both are upgrades under the same uids: Flink 2.2 restores
state kept with a TTL into a descriptor with another TTL or none (RocksDB logs
"Performing state migration for state ... version_state"), and the versions
survive (the re-sent changes stay stale).

What Flink cannot refuse, seen here: PyFlink keeps a Python operator's state as
byte arrays on the JVM side (``BytePrimitiveArraySerializer`` whatever the
declared type), so a job whose ``versioned-update`` operator declares
``version_state`` with another type restores the old bytes without a word. Only
the state's name and the operator's uid are checked; a layout change needs a new
state name (and a migration) in onceflow's operators.

The oracle is the pure core over every record in arrival order (one partition
per entity key, so each key's changes are read in the order they were sent).
After each stage the committed outputs (read_committed topics, committed
Parquet rows) equal it exactly; at the end no transaction is left open and the
last stable offset of every output partition is its high watermark.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from lifecycle import assert_no_transaction_left, onceflow_cli

from onceflow.local.cluster import LocalFlinkCluster
from onceflow.local.jobs import list_jobs
from onceflow.operators.versioned.core import NEWER_WINS
from onceflow.testing.changes import (
    ChangeItem,
    ChangeOracle,
    ChangeWorkloadSpec,
    expected_changes,
    generate_changes,
)
from onceflow.testing.changes_check import compare_outputs, read_outputs
from onceflow.testing.check import CheckReport
from onceflow.testing.recovery import send

DAY_MS = 24 * 3600 * 1000
STAGES = (2, 3, 1)  # the job's parallelism in each stage
TTLS_MS = (DAY_MS, 2 * DAY_MS, 0)  # its state TTL in each stage (0: off)
OUTPUT_PARTITIONS = 2
_OUTPUTS = ("applied", "stale", "conflict", "dlq")


def _topics(bootstrap: str, stamp: str) -> dict[str, str]:
    from kafka import KafkaAdminClient

    topics = {role: f"it_rescale_v_{role}_{stamp}" for role in ("in", *_OUTPUTS)}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"}
    admin.create_topics(
        {
            name: {
                "num_partitions": 4 if role == "in" else OUTPUT_PARTITIONS,
                "replication_factor": 1,
                "configs": compacted if role == "applied" else {},
            }
            for role, name in topics.items()
        },
        wait_for_metadata=True,
    )
    admin.close()
    return topics


def _wait_exact(
    bootstrap: str, topics: dict[str, str], changes: Path, oracle: ChangeOracle, timeout: float
) -> dict[str, CheckReport]:
    """Until every committed output equals the oracle (or the deadline: the last reports)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = compare_outputs(oracle, read_outputs(bootstrap, topics, changes))
        if all(r.ok for r in reports.values()) or time.monotonic() > deadline:
            return reports
        time.sleep(1)


@pytest.fixture(scope="module")
def rescaled(
    flink_cluster: LocalFlinkCluster, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run the 2 -> 3 -> (refused) -> 1 scenario through the CLI; what each stage saw."""
    stamp = uuid.uuid4().hex[:8]
    topics = _topics(kafka_bootstrap, stamp)
    changes = tmp_path_factory.mktemp("changes")
    prefix = f"it-rescale-v-{stamp}"
    job_args = [
        "--bootstrap", kafka_bootstrap, "--input-topic", topics["in"],
        "--applied-topic", topics["applied"], "--stale-topic", topics["stale"],
        "--conflict-topic", topics["conflict"], "--dlq-topic", topics["dlq"],
        "--changes-path", str(changes), "--changes-bucketing", "none", "--mode", NEWER_WINS,
        "--transactional-id-prefix", prefix, "--group-id", prefix,
        "--checkpoint-interval-ms", "1000", "--job-name", f"it-rescale-v-{stamp}",
    ]  # fmt: skip
    items = generate_changes(ChangeWorkloadSpec(changes=900, keys=40, seed=29, shuffle_window=6))
    thirds = [items[i * len(items) // 3 : (i + 1) * len(items) // 3] for i in range(3)]
    sent: list[ChangeItem] = []
    stages: list[dict[str, Any]] = []
    savepoint: str | None = None
    for n, parallelism in enumerate(STAGES):
        # Every change sent so far again (each a repeat or stale by now), then new ones.
        batch = sent + thirds[n]
        send(kafka_bootstrap, topics["in"], [(it.key, it.value) for it in batch])
        sent += batch
        oracle = expected_changes((it.value for it in sent), NEWER_WINS)
        resume = ["--from-savepoint", savepoint] if savepoint else []
        ttl = ["--ttl-ms", str(TTLS_MS[n])]
        code, job_id, err = onceflow_cli(
            "cluster", "submit", "jobs/versioned_upsert.py", "--detached", *resume,
            "--parallelism", str(parallelism), "--", *job_args, *ttl,
        )  # fmt: skip
        assert code == 0, err
        running = {j.job_id: j for j in list_jobs(flink_cluster.rest())}[job_id]
        reports = _wait_exact(kafka_bootstrap, topics, changes, oracle, timeout=120)
        code, savepoint, err = onceflow_cli("cluster", "stop", job_id)
        assert code == 0 and savepoint.startswith("file:"), err
        stages.append(
            {
                "parallelism": running.parallelism,
                "reports": reports,
                "resent": len(sent) - len(thirds[n]) - sum(len(t) for t in thirds[:n]),
                "oracle": oracle,
            }
        )
    return {"topics": topics, "prefix": prefix, "stages": stages, "savepoint": savepoint}


@pytest.mark.slow  # ~95 s in CI: in `make test-ops` and `make test-slow`
def test_versioned_rescaled_2_3_1_and_upgraded_applies_each_change_once(
    rescaled: dict[str, Any], kafka_bootstrap: str
) -> None:
    stages = rescaled["stages"]
    assert [s["parallelism"] for s in stages] == list(STAGES)
    for stage in stages:
        failed = {name: r.render() for name, r in stage["reports"].items() if not r.ok}
        assert not failed, (stage["parallelism"], failed)
    # The re-sent changes reached the job and were not applied again: the oracle saw them
    # as repeats or stale, and the outputs matched it.
    last = stages[-1]["oracle"]
    assert stages[-1]["resent"] > 0 and last.repeats > 0 and last.stale
    topics = rescaled["topics"]
    outputs = {topics[role]: OUTPUT_PARTITIONS for role in _OUTPUTS}
    assert_no_transaction_left(kafka_bootstrap, rescaled["prefix"], list(topics.values()), outputs)

"""The job process killed (SIGKILL) at each XA step of the PostgreSQL sink, then resumed.

The dedup job writes its ledger (append table) at parallelism 2 from a 2-partition
topic. A test hook in the JDBC glue (``ONCEFLOW_XA_HOLD=<step>@<marker>``, armed by
``<marker>.arm``) freezes the first XA call of the chosen step once phase A is
committed and phase B is being written; the test then kills the whole process
(mini-cluster included) with SIGKILL, resumes the job from the newest retained
checkpoint at parallelism 1 (a downscale: one writer inherits both old subtasks'
leftovers, one committer both old subtasks' committables), sends phase C and reads
the table with psycopg:

- ``after-prepare``: a transaction is prepared, its checkpoint never completes. It
  must be rolled back on resume and its rows replayed: a commit would duplicate them,
  leaving it prepared keeps its row locks forever.
- ``before-commit`` (slow): the checkpoint completed, its transaction is not
  committed yet. The resumed committer must commit it from the restored checkpoint.
- ``after-commit`` (slow): the checkpoint completed and one transaction is committed; the
  resumed committer commits the restored committables again, finds that one
  committed (``XAER_NOTA``) and goes on. The connector's XA sink commits inside
  the checkpoint snapshot, before the checkpoint completes: there the kill comes
  before completion, the resume replays committed rows and the ledger shows them
  twice.

Then (slow) the rescale by the book: stopped with a savepoint at parallelism 2,
resumed at 1 with every id sent again and new ones: each id once.

Each time the ledger must hold each first occurrence exactly once and no prepared
transaction may be left. With ``ONCEFLOW_PG_XA_SINK=connector`` (flink-connector-jdbc's
XA sink, the hook wraps its data source the same way) every one of them fails: its
writer refuses the downscale ("more than one state to recover"); resumed at the same
parallelism, ``after-prepare`` and ``before-commit`` leave a prepared transaction
behind and ``after-commit`` duplicates rows.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from onceflow.errors import OnceflowError
from onceflow.testing.check import compare
from onceflow.testing.harness import JobProcess, wait_until
from onceflow.testing.recovery import send
from onceflow.testing.workload import Expectation, WorkloadSpec, generate

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def no_prepared_transaction_left(postgres_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(postgres_url) as conn:
        left = conn.execute("SELECT gid, prepared FROM pg_prepared_xacts").fetchall()
    assert left == [], f"prepared transactions left behind: {left}"


def _count(url: str, table: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def newest_retained_checkpoint(checkpoint_dir: Path) -> Path:
    """The newest ``chk-N`` folder with its ``_metadata`` (a completed checkpoint)."""
    done = [m.parent for m in checkpoint_dir.glob("*/chk-*/_metadata")]
    if not done:
        raise OnceflowError(f"no completed checkpoint under {checkpoint_dir}")
    return max(done, key=lambda chk: int(chk.name.split("-")[1]))


def _kill(job: JobProcess) -> None:
    """SIGKILL the job's whole process group (its mini-cluster dies with it)."""
    assert job.proc is not None
    os.killpg(job.proc.pid, signal.SIGKILL)
    job.proc.wait(timeout=30)


def _crash_at(
    step: str,
    bootstrap: str,
    url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    table = unique_name("ledger").lower()[:63]
    topics = {name: topic_factory(name, partitions=2) for name in ("in", "out", "dlq")}
    spec = WorkloadSpec(
        count=2_400, duplicate_ratio=0.3, malformed_ratio=0.01, seed=37, oversize_every=0
    )
    items = list(generate(spec))
    exp = Expectation.collect(items, spec)
    records = [(it.ident.encode() if it.ident else None, it.value) for it in items]
    a_end, b_end = len(items) * 2 // 5, len(items) * 7 // 10
    a_uniques = sum(1 for it in items[:a_end] if it.kind == "unique")
    checkpoints = tmp_path / "checkpoints"
    marker = tmp_path / "held"
    args = [
        "--bootstrap", bootstrap,
        "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"],
        "--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("group"),
        "--checkpoint-interval-ms", "1000", "--checkpoint-dir", str(checkpoints),
        "--pg-url", url, "--pg-table", table, "--pg-create-table",
    ]  # fmt: skip
    first = JobProcess("onceflow.jobs.dedup", [*args, "--parallelism", "2"], tmp_path / "1.log")
    first.env = {"ONCEFLOW_XA_HOLD": f"{step}@{marker}"}
    try:
        first.start()
        send(bootstrap, topics["in"], records[:a_end])
        wait_until("phase A committed", lambda: _count(url, table) >= a_uniques, 180)
        Path(f"{marker}.arm").touch()
        send(bootstrap, topics["in"], records[a_end:b_end])
        wait_until(f"the hold at {step}", marker.exists, 120, interval=0.05)
        _kill(first)
    except Exception:
        log.error("first run's log:\n%s", first.log_tail())
        raise
    finally:
        first.stop()
    visible = _count(url, table)
    restored = newest_retained_checkpoint(checkpoints)
    log.info("killed at %s with %d ledger rows visible; resuming from %s", step, visible, restored)
    resume = ["--parallelism", "1", "--flink-option", f"execution.state-recovery.path={restored}"]
    second = JobProcess("onceflow.jobs.dedup", [*args, *resume], tmp_path / "2.log")
    try:
        second.start()
        send(bootstrap, topics["in"], records[b_end:])
        wait_until("every ledger row", lambda: _count(url, table) >= len(exp.unique_ids), 180)
        settled = second.completed_checkpoints()
        wait_until("one more checkpoint", lambda: second.completed_checkpoints() > settled, 60)
    except Exception:
        log.error("resumed run's log:\n%s", second.log_tail())
        raise
    finally:
        second.stop()
    with psycopg.connect(url) as conn:
        ledger = [r for (r,) in conn.execute(f"SELECT record FROM {table}").fetchall()]
    report = compare(exp.unique_ids, [json.loads(record)["id"] for record in ledger])
    log.info("ledger after the crash at %s:\n%s", step, report.render())
    assert report.ok, report.render()


@pytest.mark.parametrize(
    "step",
    [
        "after-prepare",
        pytest.param("before-commit", marks=pytest.mark.slow),
        pytest.param("after-commit", marks=pytest.mark.slow),
    ],
)
def test_ledger_is_exact_after_the_process_is_killed_at_an_xa_step_and_resumed_downscaled(
    step: str,
    kafka_bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    _crash_at(step, kafka_bootstrap, postgres_url, topic_factory, unique_name, tmp_path)


# Rescale with a savepoint ----------------------------------------------------------------


def _ids(ids: range, seq: int) -> list[tuple[bytes, bytes]]:
    """Each id twice (a duplicate in the same phase), keyed by id."""
    return [
        (f"id-{n}".encode(), json.dumps({"id": f"id-{n}", "seq": seq, "copy": copy}).encode())
        for n in ids
        for copy in range(2)
    ]


@pytest.mark.slow
def test_ledger_is_exact_after_a_stop_with_savepoint_at_2_and_a_resume_at_1(
    kafka_bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    table = unique_name("ledger").lower()[:63]
    topics = {name: topic_factory(name, partitions=2) for name in ("in", "out", "dlq")}
    args = [
        "--bootstrap", kafka_bootstrap,
        "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"],
        "--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("group"),
        "--checkpoint-interval-ms", "1000", "--checkpoint-dir", str(tmp_path / "checkpoints"),
        "--pg-url", postgres_url, "--pg-table", table, "--pg-create-table",
    ]  # fmt: skip
    first = JobProcess("onceflow.jobs.dedup", [*args, "--parallelism", "2"], tmp_path / "1.log")
    try:
        first.start()
        send(kafka_bootstrap, topics["in"], _ids(range(600), seq=1))
        wait_until("the first ids committed", lambda: _count(postgres_url, table) >= 600, 180)
        jid = first.job_id()
        assert jid is not None
        savepoint = first.rest.stop_with_savepoint(jid, (tmp_path / "savepoints").as_uri())
        first.wait(timeout=120)
    except Exception:
        log.error("first run's log:\n%s", first.log_tail())
        raise
    finally:
        first.stop()
    with psycopg.connect(postgres_url) as conn:
        pending = conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()
    log.info("stopped at parallelism 2 with savepoint %s; %s prepared", savepoint, pending)
    resume = ["--parallelism", "1", "--flink-option", f"execution.state-recovery.path={savepoint}"]
    second = JobProcess("onceflow.jobs.dedup", [*args, *resume], tmp_path / "2.log")
    try:
        second.start()
        # Every id seen so far again, and new ones: only the new ones may be written.
        send(kafka_bootstrap, topics["in"], _ids(range(1000), seq=2))
        wait_until("every id committed", lambda: _count(postgres_url, table) >= 1000, 180)
        settled = second.completed_checkpoints()
        wait_until("two more checkpoints", lambda: second.completed_checkpoints() > settled + 1, 60)
    except Exception:
        log.error("resumed run's log:\n%s", second.log_tail())
        raise
    finally:
        second.stop()
    with psycopg.connect(postgres_url) as conn:
        ids = [i for (i,) in conn.execute(f"SELECT id FROM {table}").fetchall()]
    report = compare([f"id-{n}" for n in range(1000)], ids)
    assert report.ok, report.render()

"""The database crashes under a running exactly-once job (real postmaster SIGKILL).

A private PostgreSQL server on a port of its own (the session's server is left
alone), the dedup job writing its ledger there. While the job writes, the
postmaster is killed with SIGKILL and restarted: open transactions are lost,
prepared ones survive the crash (PostgreSQL keeps them on disk). The job fails,
restarts from its last completed checkpoint, commits the prepared transactions
its checkpoint lists, rolls back the rest and replays. The ledger must hold each
first occurrence once, and no prepared transaction may be left.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from onceflow.local.postgres import LocalPostgres, PostgresSettings
from onceflow.testing.check import compare
from onceflow.testing.harness import JobProcess, count_values, free_port, wait_until
from onceflow.testing.recovery import send
from onceflow.testing.workload import Expectation, WorkloadSpec, generate

log = logging.getLogger(__name__)


@pytest.fixture
def private_postgres() -> Iterator[LocalPostgres]:
    server = LocalPostgres(PostgresSettings(port=free_port()))
    server.up()
    yield server
    server.down()
    shutil.rmtree(server.home, ignore_errors=True)


def _count(url: str, sql: str) -> int:
    """The query's count; 0 while the table is not created yet or the server restarts."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(sql).fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return 0
    return int(row[0]) if row else 0


def test_dedup_ledger_is_exact_after_the_postmaster_is_killed_mid_run(
    kafka_bootstrap: str,
    private_postgres: LocalPostgres,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url = private_postgres.url
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    spec = WorkloadSpec(
        count=3_000, duplicate_ratio=0.3, malformed_ratio=0.01, seed=31, oversize_every=0
    )
    items = list(generate(spec))
    exp = Expectation.collect(items, spec)
    records = [(it.ident.encode() if it.ident else None, it.value) for it in items]
    split = len(items) // 2
    args = [
        "--bootstrap", kafka_bootstrap,
        "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"],
        "--transactional-id-prefix", unique_name("tx"), "--group-id", unique_name("group"),
        "--checkpoint-interval-ms", "2000", "--restart-attempts", "20",
        "--pg-url", url, "--pg-table", "ledger", "--pg-create-table",
    ]  # fmt: skip
    job = JobProcess("onceflow.jobs.dedup", args, tmp_path / "job.log")
    rows = "SELECT count(*) FROM ledger"
    try:
        job.start()
        send(kafka_bootstrap, topics["in"], records[:split])
        wait_until("the first ledger rows committed", lambda: _count(url, rows) > 0, 180)
        send(kafka_bootstrap, topics["in"], records[split:])
        wait_until(
            "every output written (uncommitted)",
            lambda: (
                len(count_values(kafka_bootstrap, topics["out"], "read_uncommitted"))
                >= len(exp.unique_ids)
            ),
            120,
            interval=0.1,
        )
        before = _count(url, rows)
        private_postgres.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until("the postmaster gone", lambda: not private_postgres.status().alive, 30)
        private_postgres.up()
        pending = _count(url, "SELECT count(*) FROM pg_prepared_xacts")
        log.info(
            "postmaster SIGKILLed with %d ledger rows committed, back after %.1f s with %d "
            "prepared transactions pending",
            before,
            time.monotonic() - killed_at,
            pending,
        )
        wait_until("the job's restart", lambda: job.restarts() >= 1, 120)
        wait_until(
            "every ledger row committed",
            lambda: _count(url, rows) >= len(exp.unique_ids),
            180,
        )
        settled = job.completed_checkpoints()
        wait_until("one more checkpoint", lambda: job.completed_checkpoints() > settled, 60)
        restarts = job.restarts()
    except Exception:
        log.error("job log:\n%s", job.log_tail())
        raise
    finally:
        job.stop()
    with psycopg.connect(url) as conn:
        ledger = conn.execute("SELECT record FROM ledger").fetchall()
        left = conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
    report = compare(exp.unique_ids, [json.loads(record)["id"] for (record,) in ledger])
    log.info("after the crash: %d restarts\n%s", restarts, report.render())
    assert report.ok, report.render()
    assert left == [], f"prepared transactions left behind: {left}"

"""Jobs writing PostgreSQL tables through the XA JDBC sink, killed and recovered.

Real parts only: the project's PostgreSQL server (``postgres_url``), the broker,
the jobs on the mini-cluster, psycopg reading the tables afterwards.

- Dedup job, append table: a failure injected after a completed checkpoint; the
  table holds each first occurrence once (exact multiset of ids).
- Negative control: the same with ``--guarantee at-least-once`` (a plain JDBC
  sink flushing every 200 ms) must show duplicate rows.
- Versioned upsert job, versioned table: the same failure; each key's row is the
  oracle's final state (version, tombstone, payload), and a trigger-fed history
  shows no key's committed version ever went down.
- Start-time refusals against the real server: unreachable URL, wrong table shape.

After every test no prepared transaction is left (``pg_prepared_xacts`` empty).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from onceflow.operators.versioned.core import DELETE, NEWER_WINS
from onceflow.operators.versioned.output import json_text
from onceflow.testing.changes import ChangeWorkloadSpec, expected_changes, generate_changes
from onceflow.testing.check import CheckReport, compare
from onceflow.testing.harness import JobProcess, run_to_end
from onceflow.testing.recovery import (
    Phases,
    ScenarioLog,
    retry_until_replayed,
    run_kill_and_recover,
)
from onceflow.testing.workload import Expectation, WorkloadSpec, generate

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def no_prepared_transaction_left(postgres_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(postgres_url) as conn:
        left = conn.execute("SELECT gid, prepared FROM pg_prepared_xacts").fetchall()
    assert left == [], f"prepared transactions left behind: {left}"


@pytest.fixture
def table_name(unique_name: Callable[[str], str]) -> Callable[[str], str]:
    """Per-test table names (lower case: PostgreSQL folds unquoted names)."""
    return lambda hint: unique_name(hint).lower()[:63]


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


# Dedup job -> append table -------------------------------------------------------------


def _dedup_recovery(
    guarantee: str,
    bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    table: str,
    tmp_path: Path,
) -> tuple[CheckReport, ScenarioLog]:
    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    spec = WorkloadSpec(
        count=3_000, duplicate_ratio=0.3, malformed_ratio=0.01, seed=23, oversize_every=0
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
    args = [
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
        "--checkpoint-interval-ms",
        "3000",
        "--fail-on-id",
        poison_id,
        "--fail-marker-dir",
        str(tmp_path / "faults"),
        "--pg-url",
        postgres_url,
        "--pg-table",
        table,
        "--pg-create-table",
    ]
    job = JobProcess("onceflow.jobs.dedup", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["out"], phases)
    assert (tmp_path / "faults" / f"{poison_id}.fired").exists(), "the failure never fired"
    assert story.restarts >= 1, story.render()
    rows = _rows(postgres_url, f"SELECT id, record FROM {table}")
    # The id column is the key the job computed; the record is the input's JSON text.
    assert all(json.loads(record)["id"] == ident for ident, record in rows[:50])
    report = compare(exp.unique_ids, [json.loads(record)["id"] for _, record in rows])
    log.info("%s ledger: %d rows\n%s\n%s", guarantee, len(rows), report.render(), story.render())
    return report, story


def test_dedup_append_table_holds_each_record_once_after_injected_failure(
    kafka_bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    table_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    report, story = retry_until_replayed(
        lambda n: _dedup_recovery(
            "exactly-once",
            kafka_bootstrap,
            postgres_url,
            topic_factory,
            unique_name,
            table_name(f"ledger{n}"),
            tmp_path / f"{n}",
        ),
        story_of=lambda outcome: outcome[1],
    )
    assert report.ok, f"{report.render()}\n{story.render()}"


def test_negative_control_at_least_once_jdbc_sink_duplicates_rows(
    kafka_bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    table_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    report, story = retry_until_replayed(
        lambda n: _dedup_recovery(
            "at-least-once",
            kafka_bootstrap,
            postgres_url,
            topic_factory,
            unique_name,
            table_name(f"ledger{n}"),
            tmp_path / f"{n}",
        ),
        story_of=lambda outcome: outcome[1],
    )
    assert report.duplicated > 0, f"the table shows no duplicates:\n{story.render()}"
    assert report.missing == 0 and report.unexpected == 0, report.render()


# Versioned upsert job -> versioned table ----------------------------------------------

HISTORY_TRIGGER = """
CREATE TABLE {table} (key text PRIMARY KEY, version bigint NOT NULL,
                      deleted boolean NOT NULL, payload text);
CREATE TABLE {table}_h (n bigserial PRIMARY KEY, key text NOT NULL, version bigint NOT NULL);
CREATE FUNCTION {table}_f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO {table}_h (key, version) VALUES (NEW.key, NEW.version); RETURN NEW; END $$;
CREATE TRIGGER {table}_t AFTER INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION {table}_f();
"""


def _versioned_recovery(
    bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    table: str,
    tmp_path: Path,
) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]], list[tuple[Any, ...]], ScenarioLog]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(HISTORY_TRIGGER.format(table=table))
    topics = {name: topic_factory(name) for name in ("in", "applied", "stale", "conflict", "dlq")}
    items = generate_changes(ChangeWorkloadSpec(changes=1200, keys=40, seed=29, shuffle_window=8))
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    records = [(it.key, it.value) for it in items]
    split = int(len(items) * 0.4)
    seen: set[tuple[str | None, int | None]] = set()
    poison = None
    for i, it in enumerate(items):
        late = i >= int(len(items) * 0.7)
        if late and it.kind == "change" and (it.entity, it.version) not in seen:
            poison = i
            break
        seen.add((it.entity, it.version))
    assert poison is not None
    phases = Phases(
        a=records[:split],
        b=records[split:poison],
        c=records[poison:],
        a_outputs=oracle.applied_before(split),
        ab_outputs=oracle.applied_before(poison),
        total_outputs=len(oracle.applied),
    )
    args = [
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
        str(tmp_path / "changes"),
        "--changes-bucketing",
        "none",
        "--transactional-id-prefix",
        unique_name("tx"),
        "--group-id",
        unique_name("group"),
        "--checkpoint-interval-ms",
        "3000",
        "--fail-on-change",
        f"{items[poison].entity}@{items[poison].version}",
        "--fail-marker-dir",
        str(tmp_path / "faults"),
        "--pg-url",
        postgres_url,
        "--pg-table",
        table,
    ]
    job = JobProcess("onceflow.jobs.versioned_upsert", args, tmp_path / "job.log")
    story = run_kill_and_recover(job, bootstrap, topics["in"], topics["applied"], phases)
    assert list((tmp_path / "faults").glob("*.fired")), "the injected failure never fired"
    last: dict[str, tuple[Any, ...]] = {}
    for event in oracle.applied:
        payload = None if event.payload is None else json_text(event.payload)
        last[event.key] = (event.key, event.version, event.op == DELETE, payload)
    expected = set(last.values())
    assert {k for k, *_ in expected} == set(oracle.final), "oracle keys disagree"
    table_rows = set(_rows(postgres_url, f"SELECT key, version, deleted, payload FROM {table}"))
    history = _rows(postgres_url, f"SELECT key, version FROM {table}_h ORDER BY n")
    log.info(
        "entities: %d rows (%d expected, %d tombstones), %d committed writes\n%s",
        len(table_rows),
        len(expected),
        sum(1 for row in expected if row[2]),
        len(history),
        story.render(),
    )
    return expected, table_rows, history, story


def test_versioned_table_equals_oracle_and_never_steps_back_after_injected_failure(
    kafka_bootstrap: str,
    postgres_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    table_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    expected, table_rows, history, story = retry_until_replayed(
        lambda n: _versioned_recovery(
            kafka_bootstrap,
            postgres_url,
            topic_factory,
            unique_name,
            table_name(f"entities{n}"),
            tmp_path / f"{n}",
        ),
        story_of=lambda outcome: outcome[3],
    )
    assert any(deleted for _, _, deleted, _ in expected), "the workload should delete keys"
    assert table_rows == expected, (
        f"missing {sorted(expected - table_rows)[:5]}, unexpected "
        f"{sorted(table_rows - expected)[:5]}\n{story.render()}"
    )
    # Committed writes per key, in the order PostgreSQL applied them: never backwards.
    newest: dict[str, int] = {}
    for key, version in history:
        assert version > newest.get(key, -1), f"{key} stepped back to {version}"
        newest[key] = version


# Refusals at start against the real server ---------------------------------------------


def _dedup_args(bootstrap: str, postgres_args: list[str]) -> list[str]:
    return [
        "--bootstrap",
        bootstrap,
        "--input-topic",
        "in",
        "--output-topic",
        "out",
        "--dlq-topic",
        "dlq",
        "--transactional-id-prefix",
        "refusal",
        *postgres_args,
    ]


def test_unreachable_database_is_refused_with_a_redacted_url(kafka_bootstrap: str) -> None:
    job = run_to_end(
        "onceflow.jobs.dedup",
        _dedup_args(
            kafka_bootstrap,
            ["--pg-url", "postgresql://app:hunter2@127.0.0.1:1/db", "--pg-table", "t"],
        ),
        timeout=120,
    )
    assert job.returncode == 2, job.stderr[-2000:]
    assert "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/db" in job.stderr
    assert "hunter2" not in job.stdout + job.stderr


def test_table_of_the_wrong_shape_is_refused_with_what_to_change(
    kafka_bootstrap: str, postgres_url: str, table_name: Callable[[str], str]
) -> None:
    table = table_name("wrong")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint)")
    job = run_to_end(
        "onceflow.jobs.dedup",
        _dedup_args(kafka_bootstrap, ["--pg-url", postgres_url, "--pg-table", table]),
        timeout=120,
    )
    assert job.returncode == 2, job.stderr[-2000:]
    assert "column id is bigint, the sink writes text; column record is missing" in job.stderr

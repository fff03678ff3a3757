"""Rows/s into PostgreSQL: onceflow's exactly-once XA sink (``ExactlyOnceRowSink``,
Flink's Sink V2 two-phase commit) and the JDBC connector's at-least-once sink,
against a plain ``COPY`` of the same rows with psycopg (the ceiling).

Every contender writes the same rows (``ROWS_PER_RECORD`` x ``--records``: a
sink run of 200,000 rows is over in a few seconds) into a fresh table of the
shape the dedup job's ledger has (``id text, record text``; record ~200 bytes of
JSON), on the PostgreSQL server of ``$ONCEFLOW_PG_URL`` or the local stack's.
The Flink contenders run ``python -m onceflow.bench.postgres`` (a bounded job:
a JVM sequence source -> the sink of :mod:`onceflow.sinks.postgres`, parallelism 1,
checkpoints every second) on its own mini-cluster; this process polls
``count(*)`` and takes the time until every row was visible, minus the same job's
time for a single row measured just before (JVM and job start-up, one checkpoint and
its commit): an exactly-once sink's rows become visible only at commits, so timing
"first to last visible row" (the method before) timed a few commits of a job that
had already written nearly everything (710k rows/s, faster than ``COPY``).
``COPY`` is timed around the statement. The Kafka input of the other contenders
is not used: this isolates the sink.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from onceflow.bench.common import BenchContext, ContenderResult

__all__ = ["CONTENDERS", "bench_rows", "main"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_MS = 1_000
ROWS_PER_RECORD = 5
PAD = "x" * 170  # record ~200 bytes with its JSON around it


def bench_rows(count: int) -> Iterator[tuple[str, str]]:
    """The rows every contender writes: ``(id, record)`` for ids 1..count."""
    for n in range(1, count + 1):
        yield str(n), f'{{"id":"{n}","payload":"{PAD}"}}'


# The same rows from a JVM sequence source (no Python per row on the Flink side).
ROWS_SQL = (
    "SELECT CAST(n AS STRING), "
    'CONCAT(\'{{"id":"\', CAST(n AS STRING), \'","payload":"\', '
    "REPEAT('x', " + str(len(PAD)) + "), '\"}}') FROM {routed}"
)


def _database_url() -> str:
    url = os.environ.get("ONCEFLOW_PG_URL")
    if url:
        return url
    from onceflow.local.postgres import LocalPostgres

    return LocalPostgres().up().address


def _rows(ctx: BenchContext) -> int:
    return ctx.records * ROWS_PER_RECORD


def _table(ctx: BenchContext, name: str) -> str:
    return f"bench_{ctx.run_id.replace('-', '_')}_{name.replace('-', '_')}{ctx.suffix}"


def _fresh_table(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id text NOT NULL, record text NOT NULL)")


def _drop(url: str, table: str) -> None:
    """The bench's tables hold up to a few hundred MB: gone once counted."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _count(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _copy(ctx: BenchContext) -> ContenderResult:
    import psycopg

    url = _database_url()
    table = _table(ctx, "copy")
    _fresh_table(url, table)
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY {table} (id, record) FROM STDIN") as copy:
            for row in bench_rows(_rows(ctx)):
                copy.write_row(row)
        conn.commit()
    seconds = time.monotonic() - started
    outputs = _count(url, table)
    _drop(url, table)
    return ContenderResult(
        name="pg-copy",
        family="postgres",
        config="psycopg COPY FROM STDIN, one transaction",
        records=_rows(ctx),
        seconds=seconds,
        records_per_s=_rows(ctx) / seconds,
        method="wall time of the COPY statement, commit included",
        outputs=outputs,
        expected_outputs=_rows(ctx),
        exact=outputs == _rows(ctx),
        wall_s=seconds,
        load1=os.getloadavg()[0],
    )


_SINKS = {"exactly-once": "ExactlyOnceRowSink XA", "at-least-once": "JdbcSink ALO"}


def _run_job(
    ctx: BenchContext, url: str, table: str, rows: int, guarantee: str, log_file: Path
) -> tuple[float, int, int | None]:
    """Run the sink job for ``rows`` rows into a fresh ``table``; poll ``count(*)``.

    :returns: seconds from the process's start until every row was visible (or the
        time box ran out, or the job ended), the rows counted then, its exit code.
    """
    _fresh_table(url, table)
    started = time.monotonic()
    cmd = [sys.executable, "-m", "onceflow.bench.postgres", "--url", url]
    cmd += ["--table", table, "--rows", str(rows), "--guarantee", guarantee]
    cmd += ["--checkpoint-dir", str(ctx.work_dir / "checkpoints" / table)]
    counted, seen_at = 0, started
    with open(log_file, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            while time.monotonic() - started < ctx.time_box_s:
                n = _count(url, table)
                if n > counted:
                    counted, seen_at = n, time.monotonic()
                if n >= rows or proc.poll() is not None:
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None and counted >= rows:
                proc.wait(timeout=60)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    counted = _count(url, table)
    _drop(url, table)
    return seen_at - started, counted, proc.returncode


def _flink(guarantee: str) -> Callable[[BenchContext], ContenderResult]:
    name = "pg-jdbc-eos" if guarantee == "exactly-once" else "pg-jdbc-alo"

    def run(ctx: BenchContext) -> ContenderResult:
        url = _database_url()
        load1 = os.getloadavg()[0]
        log_file = ctx.file(name, ".log")
        # The same job with one row: JVM and job start-up, the first checkpoint and its
        # commit. An exactly-once sink's rows become visible only at commits, so
        # "first to last visible row" would time the commits, not the writing.
        startup_s, one, _ = _run_job(
            ctx, url, _table(ctx, f"{name}-startup"), 1, guarantee,
            ctx.file(f"{name}-startup", ".log"),
        )  # fmt: skip
        wall, outputs, code = _run_job(ctx, url, _table(ctx, name), _rows(ctx), guarantee, log_file)
        common = {
            "name": name,
            "family": "postgres",
            "config": f"{_SINKS[guarantee]}, p1, batch 1000, "
            f"checkpoints {CHECKPOINT_INTERVAL_MS} ms",
            "wall_s": wall,
            "load1": load1,
            "outputs": outputs,
            "expected_outputs": _rows(ctx),
            "exact": outputs == _rows(ctx),
            "extra": {"log": str(log_file), "startup_s": round(startup_s, 2)},
        }
        seconds = wall - startup_s
        if one != 1 or outputs == 0 or seconds <= 0 or code not in (0, None):
            return ContenderResult(
                **common,  # type: ignore[arg-type]
                status="failed",
                error=f"exit {code}, {outputs} rows ({one} in the start-up run, "
                f"{startup_s:.1f} s); see {log_file}",
            )
        return ContenderResult(
            **common,  # type: ignore[arg-type]
            records=outputs,
            seconds=seconds,
            records_per_s=outputs / seconds,
            method="committed rows / (time until all were visible - the same job's time "
            "for one row)",
            time_boxed=outputs < _rows(ctx),
        )

    return run


CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {
    "pg-copy": _copy,
    "pg-jdbc-eos": _flink("exactly-once"),
    "pg-jdbc-alo": _flink("at-least-once"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """The Flink side of a contender: sequence rows -> the PostgreSQL sink, bounded."""
    from onceflow.runtime.flinkenv import FlinkSettings, create_env
    from onceflow.runtime.pgoutput import PostgresOutput, write_query_to_postgres
    from onceflow.sinks.postgres import PgColumn
    from onceflow.streams import table_env

    p = argparse.ArgumentParser(prog="python -m onceflow.bench.postgres")
    p.add_argument("--url", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--guarantee", choices=["exactly-once", "at-least-once"], required=True)
    p.add_argument("--checkpoint-dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = create_env(
        FlinkSettings(
            parallelism=1,
            checkpoint_interval_ms=CHECKPOINT_INTERVAL_MS,
            restart_attempts=0,
            checkpoint_dir=str(args.checkpoint_dir),
        )
    )
    tenv = table_env(env)
    tenv.execute_sql(
        "CREATE TEMPORARY TABLE seq (n BIGINT) WITH ('connector' = 'datagen', "
        f"'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '{args.rows}', "
        # datagen emits 10,000 rows/s unless told otherwise: the sink must be the limit.
        "'rows-per-second' = '100000000')"
    )
    seq = tenv.to_data_stream(tenv.from_path("seq"))
    spec = PostgresOutput(url=args.url, table=args.table).spec(
        columns=(PgColumn("id", "STRING", False), PgColumn("record", "STRING", False)),
        mode="append",
        guarantee=args.guarantee,
        uid="bench-sink",
    )
    write_query_to_postgres(
        env, tenv, seq, ROWS_SQL, spec, checkpoint_interval_ms=CHECKPOINT_INTERVAL_MS
    )
    env.execute("onceflow-bench-postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main())

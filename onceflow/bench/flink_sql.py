"""The same dedup in Flink SQL: every operator in the JVM, no Python on the data path.

::

    INSERT INTO sink
    SELECT id, seq, ts, payload FROM (
      SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY proctime) AS rn FROM src
    ) WHERE rn = 1

The planner turns first-row-by-processing-time into a ``Deduplicate(keep=FirstRow)``
operator whose output is append-only, so the plain Kafka sink takes it, with
``sink.delivery-guarantee = exactly-once``, a transactional id prefix and
``transaction.timeout.ms`` of 10 min (above checkpoint interval + restart, below the
broker's maximum). The source is the Kafka connector with the JSON format,
read_committed, offsets from the group (earliest for a new group), bounded at the
offsets that were latest at start. State TTL is the dedup job's 24 h horizon.

It runs through PyFlink's ``TableEnvironment`` on an environment from
:func:`onceflow.runtime.flinkenv.create_env`, so it has the same jars, checkpoint storage
and restart strategy as the Python job. Run it as a job::

    python -m onceflow.bench.flink_sql --input-topic in --output-topic out \\
        --transactional-id-prefix sql-dedup-1 --bounded
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from onceflow.bench.common import (
    BenchContext,
    ContenderResult,
    flink_tasks_running,
    run_contender,
)
from onceflow.runtime.jobconfig import parse_properties
from onceflow.testing.harness import JobProcess

__all__ = [
    "CONTENDERS",
    "DEDUP_QUERY",
    "contender_table_env",
    "exactly_once_options",
    "main",
    "parse_sql_job_args",
    "sink_ddl",
    "source_ddl",
    "source_options",
    "sql_job_parser",
    "with_options",
]

log = logging.getLogger(__name__)

DEDUP_QUERY = """
INSERT INTO sink
SELECT id, seq, ts, payload FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY proctime) AS rn FROM src
) WHERE rn = 1
"""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def with_options(options: dict[str, str]) -> str:
    """The body of a ``WITH (...)`` clause: quoted keys and values."""
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def source_options(args: argparse.Namespace, value_format: str) -> dict[str, str]:
    """A SQL contender's Kafka source: read_committed, the group's offsets (earliest for
    a new group), bounded at the offsets latest at start with ``--bounded``."""
    options = {
        "connector": "kafka",
        "topic": args.input_topic,
        "properties.bootstrap.servers": args.bootstrap,
        "properties.group.id": args.group_id,
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        # Aborted records of an upstream transactional producer must never enter.
        "properties.isolation.level": "read_committed",
        "format": value_format,
    }
    if args.bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return options


def exactly_once_options(prefix: str, transaction_timeout_ms: int = 600_000) -> dict[str, str]:
    """A Kafka SQL sink's exactly-once settings (acks from every in-sync replica)."""
    return {
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": prefix,
        # Must outlive checkpoint interval + restart, and stay under the broker's maximum.
        "properties.transaction.timeout.ms": str(transaction_timeout_ms),
        "properties.acks": "all",
    }


def source_ddl(args: argparse.Namespace) -> str:
    """``CREATE TABLE src``: the workload's JSON fields plus a processing-time column."""
    return (
        "CREATE TEMPORARY TABLE src (\n"
        "  id STRING, seq BIGINT, ts BIGINT, payload STRING,\n"
        "  proctime AS PROCTIME()\n"
        f") WITH (\n  {with_options(source_options(args, 'json'))}\n)"
    )


def sink_ddl(args: argparse.Namespace) -> str:
    """``CREATE TABLE sink``: keyed by id (raw), value JSON, ``--guarantee``."""
    options = {
        "connector": "kafka",
        "topic": args.output_topic,
        "properties.bootstrap.servers": args.bootstrap,
        "key.format": "raw",
        "key.fields": "id",
        "value.format": "json",
        "value.fields-include": "ALL",
    }
    if args.guarantee == "exactly-once":
        options.update(
            exactly_once_options(args.transactional_id_prefix, args.transaction_timeout_ms)
        )
    else:
        # Waits for every in-sync replica: a write acknowledged then lost would be a gap.
        options.update({"sink.delivery-guarantee": args.guarantee, "properties.acks": "all"})
    return (
        "CREATE TEMPORARY TABLE sink (\n"
        "  id STRING, seq BIGINT, ts BIGINT, payload STRING\n"
        f") WITH (\n  {with_options(options)}\n)"
    )


def sql_job_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The flags every SQL contender job takes (see :func:`parse_sql_job_args`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group-id", default=None, help="default: <prefix>-group")
    parser.add_argument("--transactional-id-prefix", required=True)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--bounded", action="store_true")
    parser.add_argument("--flink-option", action="append", default=[], metavar="KEY=VALUE")
    return parser


def parse_sql_job_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    args = parser.parse_args(argv)
    args.group_id = args.group_id or f"{args.transactional_id_prefix}-group"
    return args


def contender_table_env(args: argparse.Namespace, execution_mode: str = "thread") -> Any:
    """A SQL contender's ``StreamTableEnvironment``: parallelism 1, checkpoints every 2 s
    into ``--checkpoint-dir``, RocksDB, no restarts (a failure is a result), logging on."""
    from pyflink.table import StreamTableEnvironment

    from onceflow.runtime.flinkenv import FlinkSettings, create_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = create_env(
        FlinkSettings(
            parallelism=1,
            checkpoint_interval_ms=2_000,
            execution_mode=execution_mode,
            state_backend="rocksdb",
            restart_attempts=0,
            checkpoint_dir=args.checkpoint_dir,
            extra=parse_properties(args.flink_option),
        )
    )
    return StreamTableEnvironment.create(env)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = sql_job_parser("onceflow.bench.flink_sql", __doc__)
    parser.add_argument(
        "--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=2000)
    parser.add_argument("--state-backend", choices=["rocksdb", "hashmap"], default="rocksdb")
    parser.add_argument("--ttl-ms", type=int, default=24 * 3600 * 1000)
    parser.add_argument("--transaction-timeout-ms", type=int, default=600_000)
    return parse_sql_job_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the SQL dedup; returns when a bounded run has finished (final checkpoint committed)."""
    from pyflink.table import StreamTableEnvironment

    from onceflow.runtime.flinkenv import FlinkSettings, create_env
    from onceflow.sinks.kafka import KafkaSinkSpec, validate_sinks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    spec = KafkaSinkSpec(
        bootstrap=args.bootstrap,
        topic=args.output_topic,
        guarantee=args.guarantee,
        transactional_id_prefix=args.transactional_id_prefix,
        transaction_timeout_ms=args.transaction_timeout_ms,
    )
    validate_sinks(
        {"out": spec},
        checkpoint_interval_ms=args.checkpoint_interval_ms,
        restart_budget_ms=300_000,
    )
    extra = {"table.exec.state.ttl": f"{args.ttl_ms} ms", **parse_properties(args.flink_option)}
    env = create_env(
        FlinkSettings(
            parallelism=args.parallelism,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
            state_backend=args.state_backend,
            restart_attempts=0,
            checkpoint_dir=args.checkpoint_dir,
            extra=extra,
        )
    )
    tenv = StreamTableEnvironment.create(env)
    tenv.execute_sql(source_ddl(args))
    tenv.execute_sql(sink_ddl(args))
    log.info("plan:\n%s", tenv.explain_sql(DEDUP_QUERY.replace("INSERT INTO sink", "")))
    tenv.execute_sql(DEDUP_QUERY).wait()
    return 0


def run(ctx: BenchContext) -> ContenderResult:
    name = "flink-sql"
    out = ctx.create_topic(name)
    group = ctx.name(f"{name}-group")
    args = [
        "--bootstrap",
        ctx.bootstrap,
        "--input-topic",
        ctx.input_topic,
        "--output-topic",
        out,
        "--group-id",
        group,
        "--transactional-id-prefix",
        ctx.name(name),
        "--checkpoint-dir",
        str(ctx.checkpoints(name)),
        "--bounded",
    ]
    result = ContenderResult(name, "sql", "EOS/JVM only/p1/rocksdb, JSON format")
    # JobProcess adds --flink-option rest.port=<free port> for the mini-cluster.
    job = JobProcess("onceflow.bench.flink_sql", args, ctx.file(name, ".log"))
    run_contender(
        ctx, result, job, out, group, start=job.start, tasks_running=flink_tasks_running(job)
    )
    result.extra["log"] = str(job.log_file)
    return result


#: name -> runner.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {"flink-sql": run}


if __name__ == "__main__":
    sys.exit(main())

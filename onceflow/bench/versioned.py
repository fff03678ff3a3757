"""The versioned-upsert family: onceflow's versioned job against the closest Flink SQL.

Workload: the verifier's change events (:func:`onceflow.testing.changes.generate_changes`:
upserts, deletes, re-deliveries, conflicting writes, malformed records, late arrivals
within a few positions), about as many records as the shared dedup workload, written
once to an input topic of their own and read by every contender of the family.

Contenders:

* ``versioned-sql``, the reference, all JVM: the latest row per key by version
  (Flink's Top-1, ``ROW_NUMBER() OVER (PARTITION BY key ORDER BY version DESC) = 1``)
  into an exactly-once ``upsert-kafka`` sink, JSON format with parse errors skipped.
  It is what Flink SQL says of "newer wins": no stale, conflict or dead-letter
  output, no Parquet log, a delete is a row like any other. Its figure is the
  engine's ceiling for the versioned job, not the same work.
* ``versioned-jvm`` / ``versioned-jvm-alo``: ``onceflow.jobs.versioned_upsert``
  (``newer_wins``) on its JVM path (one Python call per record parses, the
  decision and the state in Java) with every output of the job: the compacted
  applied topic, stale, conflict, DLQ and the Parquet log, exactly-once /
  at-least-once on the Kafka outputs (the Parquet log is committed on
  checkpoints either way);
* ``versioned-py`` / ``versioned-py-alo``: the same job on its Python path
  (``--versioned-path python``: one keyed Python operator per record).

Throughput is measured as for every contender (:mod:`onceflow.bench.common`), on
the applied topic (the reference: its upsert topic). Exactness: the job's outputs
against the oracle (:func:`onceflow.testing.changes_check.compare_outputs`: applied,
stale, conflict, dead letters, Parquet rows); the reference's last version per key
against the oracle's. Run the SQL reference as a job::

    python -m onceflow.bench.versioned --input-topic changes --output-topic latest \\
        --transactional-id-prefix sql-top1-1 --bounded
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onceflow.bench.common import (
    BenchContext,
    ContenderResult,
    flink_tasks_running,
    run_contender,
)
from onceflow.bench.flink_sql import (
    contender_table_env,
    exactly_once_options,
    parse_sql_job_args,
    source_options,
    sql_job_parser,
    with_options,
)
from onceflow.testing.harness import JobProcess

if TYPE_CHECKING:
    from onceflow.testing.changes import ChangeOracle

__all__ = ["CONTENDERS", "TOP1_QUERY", "main"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_MS = 2_000  # the versioned job's; the SQL reference: contender_table_env

TOP1_QUERY = """
INSERT INTO sink
SELECT `key`, version, op, payload FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY version DESC) AS rn
  FROM src WHERE `key` IS NOT NULL AND version IS NOT NULL
) WHERE rn = 1
"""


def source_ddl(args: argparse.Namespace) -> str:
    """``CREATE TABLE src``: the change events' fields (the payload as JSON text)."""
    options = source_options(args, "json")
    # Malformed records are skipped (or their bad fields nulled): no dead letters here.
    options["json.ignore-parse-errors"] = "true"
    return (
        "CREATE TEMPORARY TABLE src (\n"
        "  `key` STRING, version BIGINT, op STRING, payload STRING\n"
        f") WITH (\n  {with_options(options)}\n)"
    )


def sink_ddl(args: argparse.Namespace) -> str:
    """``CREATE TABLE sink``: upsert-kafka keyed by the entity key, exactly-once."""
    options = {
        "connector": "upsert-kafka",
        "topic": args.output_topic,
        "properties.bootstrap.servers": args.bootstrap,
        "key.format": "raw",
        "value.format": "json",
        **exactly_once_options(args.transactional_id_prefix),
    }
    return (
        "CREATE TEMPORARY TABLE sink (\n"
        "  `key` STRING, version BIGINT, op STRING, payload STRING,\n"
        "  PRIMARY KEY (`key`) NOT ENFORCED\n"
        f") WITH (\n  {with_options(options)}\n)"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_sql_job_args(sql_job_parser("onceflow.bench.versioned", __doc__), argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the SQL Top-1 reference; returns when a bounded run has finished."""
    args = parse_args(argv)
    tenv = contender_table_env(args)
    tenv.execute_sql(source_ddl(args))
    tenv.execute_sql(sink_ddl(args))
    log.info("plan:\n%s", tenv.explain_sql(TOP1_QUERY.replace("INSERT INTO sink", "")))
    tenv.execute_sql(TOP1_QUERY).wait()
    return 0


# ------------------------------------------------------------------ the contenders


@dataclass
class ChangeInput:
    """The family's input topic and what an exact run writes for it."""

    topic: str
    records: int
    oracle: ChangeOracle


def change_input(ctx: BenchContext) -> ChangeInput:
    """The change workload in its own topic, produced once per run (the first contender
    of the family produces it; the others reuse it)."""
    from onceflow.operators.versioned.core import NEWER_WINS
    from onceflow.testing.changes import ChangeWorkloadSpec, expected_changes, generate_changes
    from onceflow.testing.recovery import send

    cached = ctx.shared.get("changes")
    if isinstance(cached, ChangeInput):
        return cached
    base = ChangeWorkloadSpec(changes=0, keys=1, seed=ctx.seed)
    extra = base.duplicate_ratio + base.conflict_ratio + base.malformed_ratio
    changes = max(1, round(ctx.records / (1 + extra)))
    spec = ChangeWorkloadSpec(changes=changes, keys=max(1, changes // 40), seed=ctx.seed)
    items = generate_changes(spec)
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    topic = ctx.create_topic("changes-in", output=False)
    log.info("producing %s change events to %s", f"{len(items):,}", topic)
    send(ctx.bootstrap, topic, [(it.key, it.value) for it in items])
    made = ChangeInput(topic, len(items), oracle)
    ctx.shared["changes"] = made
    return made


def run_sql(ctx: BenchContext) -> ContenderResult:
    name = "versioned-sql"
    source = change_input(ctx)
    out = ctx.create_topic(name)
    group = ctx.name(f"{name}-group")
    args = [
        "--bootstrap", ctx.bootstrap, "--input-topic", source.topic, "--output-topic", out,
        "--group-id", group, "--transactional-id-prefix", ctx.name(name),
        "--checkpoint-dir", str(ctx.checkpoints(name)), "--bounded",
    ]  # fmt: skip
    result = ContenderResult(name, "versioned", "Top-1 by version -> upsert-kafka, EOS/p1/rocksdb")
    job = JobProcess("onceflow.bench.versioned", args, ctx.file(name, ".log"))
    run_contender(
        ctx, result, job, out, group, start=job.start, tasks_running=flink_tasks_running(job),
        input_topic=source.topic, input_records=source.records, exact_expected=False,
    )  # fmt: skip
    if result.status == "ok" and not result.time_boxed:
        result.exact = _latest_versions_match(ctx, out, source.oracle)
    result.extra["log"] = str(job.log_file)
    result.extra["workload"] = describe_oracle(source.oracle)
    return result


def _latest_versions_match(ctx: BenchContext, topic: str, oracle: ChangeOracle) -> bool:
    """Whether the reference's last row of every key the oracle applied changes to carries
    the oracle's last applied version. The reference validates nothing: malformed events
    the job sends to its DLQ (an unknown op, a payload that is no object...) may add keys
    of their own, which are not compared."""
    from onceflow.testing.drain import read_committed

    expected = {event.key: int(event.version) for event in oracle.applied}
    found: dict[str, int] = {}
    for record in read_committed(ctx.bootstrap, topic, quiet_ms=500, progress=False):
        if record.key is not None and record.value is not None:
            found[record.key.decode("utf-8")] = int(json.loads(record.value)["version"])
    wrong = sorted(k for k in expected if expected[k] != found.get(k))
    if wrong:
        log.warning("versioned-sql: %d keys differ from the oracle, e.g. %s", len(wrong), wrong[:3])
    return not wrong


def run_job(ctx: BenchContext, name: str, guarantee: str, path: str) -> ContenderResult:
    from onceflow.testing.changes_check import compare_outputs, read_outputs

    source = change_input(ctx)
    topics = {
        "in": source.topic,
        "applied": ctx.create_topic(
            name, configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "86400000"}
        ),
        "stale": ctx.create_topic(f"{name}-stale", 1),
        "conflict": ctx.create_topic(f"{name}-conflict", 1),
        "dlq": ctx.create_topic(f"{name}-dlq", 1),
    }
    changes = ctx.file(f"{name}-changes")
    group = ctx.name(f"{name}-group")
    args = [
        "--bootstrap", ctx.bootstrap, "--input-topic", topics["in"],
        "--applied-topic", topics["applied"], "--stale-topic", topics["stale"],
        "--conflict-topic", topics["conflict"], "--dlq-topic", topics["dlq"],
        "--changes-path", str(changes), "--mode", "newer_wins",
        "--transactional-id-prefix", ctx.name(name), "--group-id", group,
        "--guarantee", guarantee, "--parallelism", "1", "--state-backend", "rocksdb",
        "--checkpoint-interval-ms", str(CHECKPOINT_INTERVAL_MS), "--restart-attempts", "0",
        "--checkpoint-dir", str(ctx.checkpoints(name)), "--bounded",
        "--versioned-path", path,
    ]  # fmt: skip
    short = "EOS" if guarantee == "exactly-once" else "ALO"
    result = ContenderResult(
        name, "versioned", f"newer_wins, every output (applied, stale, conflict, DLQ, Parquet), "
        f"{path} path, {short}/thread/p1/rocksdb",
    )  # fmt: skip
    job = JobProcess("onceflow.jobs.versioned_upsert", args, ctx.file(name, ".log"))
    run_contender(
        ctx, result, job, topics["applied"], group, start=job.start,
        tasks_running=flink_tasks_running(job), input_topic=source.topic,
        input_records=source.records, exact_expected=False,
    )  # fmt: skip
    if result.status == "ok" and not result.time_boxed:
        outputs = read_outputs(ctx.bootstrap, topics, changes, quiet_ms=500)
        reports = compare_outputs(source.oracle, outputs)
        bad = {
            n: (r.missing, r.unexpected) for n, r in reports.items() if r.missing or r.unexpected
        }
        if bad:
            log.warning("%s: outputs differ from the oracle (missing, unexpected): %s", name, bad)
        result.exact = not bad
    result.extra["log"] = str(job.log_file)
    result.extra["workload"] = describe_oracle(source.oracle)
    return result


def _job_runner(name: str, guarantee: str, path: str) -> Callable[[BenchContext], ContenderResult]:
    return lambda ctx: run_job(ctx, name, guarantee, path)


#: name -> runner, in run order.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {
    "versioned-sql": run_sql,
    "versioned-jvm": _job_runner("versioned-jvm", "exactly-once", "jvm"),
    "versioned-jvm-alo": _job_runner("versioned-jvm-alo", "at-least-once", "jvm"),
    "versioned-py": _job_runner("versioned-py", "exactly-once", "python"),
    "versioned-py-alo": _job_runner("versioned-py-alo", "at-least-once", "python"),
}


def describe_oracle(oracle: ChangeOracle) -> dict[str, Any]:
    """The workload's outcome counts, for the report."""
    return {
        "applied": len(oracle.applied),
        "stale": len(oracle.stale),
        "conflicts": len(oracle.conflicts),
        "repeats": oracle.repeats,
        "dead_letters": len(oracle.dead_letters),
        "keys": len(oracle.final),
    }


if __name__ == "__main__":
    sys.exit(main())

"""The ceiling: Kafka's own tools on the same broker and the same workload.

- ``kafka-producer-perf``: ``ProducerPerformance`` writes the workload's records
  (a payload file of them) to a scratch topic, ``acks=all``, unthrottled;
- ``kafka-producer-perf-txn``: the same with a transaction committed every
  checkpoint interval (``--transaction-duration-ms``): the exactly-once write side;
- ``kafka-consumer-perf``: ``ConsumerPerformance`` reads the input topic
  (read_committed); its ``fetch.nMsg.sec`` (time spent fetching, group join
  excluded) is **the ceiling** every other figure is divided by;
- ``kafka-eos-copier``: ``TransactionalMessageCopier`` copies the input topic
  to an output topic, committing the consumed offsets in each transaction:
  Kafka's own exactly-once consume-transform-produce loop with no transform.
  Its producer hard-codes ``batch.size=512`` (to test many in-flight batches), so
  it is a reference for a transactional copy, not a ceiling.

The perf tools report their own records/s, parsed from their output; the copier
is measured like the stream processors (output append times, see ``common``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from onceflow.bench.common import BenchContext, Child, ContenderResult, run_contender, watch
from onceflow.runtime.java import classpath, java_executable
from onceflow.testing.workload import generate

__all__ = [
    "CONTENDERS",
    "parse_consumer_perf",
    "parse_copier",
    "parse_producer_perf",
]

log = logging.getLogger(__name__)

PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"
COPIER = "org.apache.kafka.tools.TransactionalMessageCopier"

#: Records per copier transaction (its ``max.poll.records`` too).
COPIER_TRANSACTION_SIZE = 10_000
#: A transaction per checkpoint interval of the Flink contenders.
TRANSACTION_DURATION_MS = 2_000

_PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


def parse_producer_perf(text: str) -> dict[str, float]:
    """The final summary line of ``ProducerPerformance``.

    :raises ValueError: when the output has no summary line (the tool failed).
    """
    found = list(_PRODUCER_SUMMARY.finditer(text))
    if not found:
        raise ValueError(f"no ProducerPerformance summary in its output: {text[-600:]!r}")
    m = found[-1]
    return {
        "records": int(m["records"]),
        "records_per_s": float(m["rps"]),
        "mb_per_s": float(m["mbps"]),
        "avg_latency_ms": float(m["avg"]),
        "max_latency_ms": float(m["max"]),
        "p50_ms": float(m["p50"]),
        "p95_ms": float(m["p95"]),
        "p99_ms": float(m["p99"]),
        "p999_ms": float(m["p999"]),
    }


def parse_consumer_perf(text: str) -> dict[str, float]:
    """The CSV header and values line of ``ConsumerPerformance``.

    :returns: every numeric column (``nMsg.sec``, ``fetch.nMsg.sec``, ...).
    :raises ValueError: when there is no header/values pair.
    """
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if "fetch.nMsg.sec" in line and i + 1 < len(lines):
            names = [n.strip() for n in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            if len(values) != len(names):
                break
            out: dict[str, float] = {}
            for name, value in zip(names, values, strict=True):
                try:
                    out[name] = float(value)
                except ValueError:
                    continue  # the start/end time columns
            return out
    raise ValueError(f"no ConsumerPerformance result in its output: {text[-600:]!r}")


def parse_copier(text: str) -> dict[str, Any]:
    """The JSON status lines of ``TransactionalMessageCopier``.

    :returns: ``total_processed`` and the seconds between the end of the group
        join (``RebalanceComplete``) and the shutdown, as the tool saw them.
    """
    stages: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                stages.append(json.loads(line))
            except ValueError:
                continue
    if not stages:
        raise ValueError(f"no TransactionalMessageCopier status in its output: {text[-600:]!r}")

    def when(stage: dict[str, Any]) -> datetime:
        return datetime.strptime(stage["time"], "%Y/%m/%d %H:%M:%S:%f")

    joined = next((s for s in stages if s.get("stage") == "RebalanceComplete"), stages[0])
    last = stages[-1]
    return {
        "total_processed": int(last.get("totalProcessed", 0)),
        "tool_seconds": (when(last) - when(joined)).total_seconds(),
        "shutdown_complete": last.get("stage") == "ShutdownComplete",
    }


def _java(main_class: str, args: list[str], log_file: Path) -> Child:
    return Child(
        [java_executable(), "-Xmx512m", "-cp", classpath("kafka"), main_class, *args], log_file
    )


def _payload_file(ctx: BenchContext) -> Path:
    """The first 10,000 records of the workload, one per line, for ProducerPerformance."""
    path = ctx.work_dir / "payloads.txt"
    if not path.exists():
        with open(path, "wb") as f:
            for item in itertools.islice(generate(ctx.spec()), 10_000):
                f.write(item.value + b"\n")
    return path


def _self_reported(
    ctx: BenchContext,
    result: ContenderResult,
    child: Child,
    parse: Callable[[str], dict[str, Any]],
    rate_key: str,
    out_topic: str | None,
) -> ContenderResult:
    result.load1 = os.getloadavg()[0]
    t0 = time.monotonic()
    child.start()
    finished = watch(child, result.name, ctx.bootstrap, out_topic, ctx.time_box_s)
    result.wall_s = time.monotonic() - t0
    text = child.log_tail(200_000)
    if not finished or child.returncode != 0:
        result.status = "failed"
        result.error = f"exit {child.returncode} (time box: {not finished}): {text[-800:]}"
        return result
    figures = parse(text)
    result.extra.update(figures)
    result.records_per_s = float(figures[rate_key])
    result.records = ctx.records
    result.seconds = ctx.records / result.records_per_s if result.records_per_s else None
    result.method = f"self-reported by the tool ({rate_key})"
    return result


def producer_perf(ctx: BenchContext, *, transactional: bool) -> ContenderResult:
    name = "kafka-producer-perf-txn" if transactional else "kafka-producer-perf"
    topic = ctx.create_topic(name, output=False)
    config = "acks=all, unthrottled, payloads = workload records"
    args = [
        "--topic",
        topic,
        "--num-records",
        str(ctx.records),
        "--throughput",
        "-1",
        "--payload-file",
        str(_payload_file(ctx)),
        "--producer-props",
        f"bootstrap.servers={ctx.bootstrap}",
        "acks=all",
    ]
    if transactional:
        args += [
            "--transactional-id",
            ctx.name(name),
            "--transaction-duration-ms",
            str(TRANSACTION_DURATION_MS),
        ]
        config += f", a transaction every {TRANSACTION_DURATION_MS} ms"
    result = ContenderResult(name, "kafka", config)
    child = _java(PRODUCER_PERF, args, ctx.file(name, ".log"))
    return _self_reported(ctx, result, child, parse_producer_perf, "records_per_s", topic)


def consumer_perf(ctx: BenchContext) -> ContenderResult:
    name = "kafka-consumer-perf"
    props = ctx.work_dir / "consumer-perf.properties"
    props.write_text("isolation.level=read_committed\nauto.offset.reset=earliest\n")
    args = [
        "--bootstrap-server",
        ctx.bootstrap,
        "--topic",
        ctx.input_topic,
        "--messages",
        str(ctx.records),
        "--group",
        ctx.name(name),
        "--consumer.config",
        str(props),
        "--timeout",
        "60000",
    ]
    result = ContenderResult(name, "kafka", "read_committed, fetch time only (group join excluded)")
    child = _java(CONSUMER_PERF, args, ctx.file(name, ".log"))
    return _self_reported(ctx, result, child, parse_consumer_perf, "fetch.nMsg.sec", None)


def eos_copier(ctx: BenchContext) -> ContenderResult:
    name = "kafka-eos-copier"
    out = ctx.create_topic(name)
    group = ctx.name(f"{name}-group")
    args = [
        "--input-topic",
        ctx.input_topic,
        "--input-partition",
        "0",  # ignored with --group-mode: the copier subscribes to every partition
        "--group-mode",
        "--use-group-metadata",
        "--output-topic",
        out,
        "--broker-list",
        ctx.bootstrap,
        "--transactional-id",
        ctx.name(name),
        "--consumer-group",
        group,
        "--transaction-size",
        str(COPIER_TRANSACTION_SIZE),
        # Must outlive the longest transaction; the broker allows up to its maximum.
        "--transaction-timeout",
        "600000",
    ]
    result = ContenderResult(
        name,
        "kafka",
        f"one process, group mode, <= {COPIER_TRANSACTION_SIZE:,} records/transaction, "
        "batch.size=512 (hard-coded)",
    )
    child = _java(COPIER, args, ctx.file(name, ".log"))
    run_contender(ctx, result, child, out, group, start=child.start, all_outputs=True)
    if result.status == "ok":
        try:
            result.extra.update(parse_copier(child.log_tail(2_000_000)))
        except ValueError as exc:
            log.warning("copier output not parsed: %s", exc)
    return result


#: name -> runner, in run order.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {
    "kafka-producer-perf": lambda ctx: producer_perf(ctx, transactional=False),
    "kafka-producer-perf-txn": lambda ctx: producer_perf(ctx, transactional=True),
    "kafka-consumer-perf": consumer_perf,
    "kafka-eos-copier": eos_copier,
}

"""End-to-end latency of the dedup job: produce time -> visible to a read_committed reader.

Protocol, once per checkpoint interval (1 s and 5 s):

1. Start the baseline dedup job (exactly-once, thread mode, p1, RocksDB),
   unbounded, and wait for its first completed checkpoint (it is then running).
2. Start a read_committed reader of the output (:class:`~onceflow.bench.stream.Collector`).
3. Feed the workload at a steady rate (default 2,000 records/s for 20 s); each
   record carries its produce time.
4. Wait until every distinct id fed has been seen once, then stop the job.
5. Latency of a record = when the reader saw it - when it was produced;
   p50/p95/p99/max over every output record.

Exactly-once output only becomes visible when the checkpoint covering it
completes and its transactions commit, so the latency is bounded below by the
time to the next checkpoint: about half the interval on average, a whole
interval at worst, plus the commit.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from onceflow.bench.common import PROGRESS_EVERY_S, BenchContext
from onceflow.bench.flink_dedup import BASELINE, dedup_job_args
from onceflow.bench.stream import Collector, Feeder, percentile
from onceflow.errors import OnceflowError
from onceflow.testing.harness import JobProcess, wait_until

__all__ = ["LatencyResult", "run_latency"]

log = logging.getLogger(__name__)


@dataclass
class LatencyResult:
    """Latency of one checkpoint interval."""

    name: str
    checkpoint_interval_ms: int
    rate: float
    seconds: float
    status: str = "ok"
    fed: int = 0
    expected_outputs: int = 0
    outputs: int = 0
    distinct: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    load1: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_latency(
    ctx: BenchContext, interval_ms: int, rate: float = 2000.0, seconds: float = 20.0
) -> LatencyResult:
    """Measure one checkpoint interval by the module's protocol."""
    name = f"latency-{interval_ms // 1000}s"
    result = LatencyResult(name, interval_ms, rate, seconds, load1=os.getloadavg()[0])
    topics = {
        "in": ctx.create_topic(f"{name}-in", output=False),
        "out": ctx.create_topic(name),
        "dlq": ctx.create_topic(f"{name}-dlq", 1),
    }
    args = dedup_job_args(
        ctx, name, BASELINE, topics, bounded=False, checkpoint_interval_ms=interval_ms
    )
    job = JobProcess("onceflow.jobs.dedup", args, ctx.file(name, ".log"))
    result.extra["log"] = str(job.log_file)
    collector: Collector | None = None
    feeder: Feeder | None = None
    try:
        _start_and_wait_for_checkpoint(job, name)
        collector = Collector(ctx.bootstrap, topics["out"])
        collector.start()
        feeder = Feeder(ctx.bootstrap, topics["in"], ctx.spec(count=int(rate * seconds)), rate)
        feeder.start()
        _feed_to_the_end(feeder, collector, name)
        result.fed = feeder.sent
        result.expected_outputs = len(feeder.unique_ids)
        c = collector
        wait_until(
            f"{name}: every fed id committed",
            lambda: c.count() >= result.expected_outputs or not job.alive(),
            timeout=max(60.0, 6 * interval_ms / 1000),
        )
    except OnceflowError as exc:
        result.status = "failed"
        result.error = str(exc)[-1500:]
    finally:
        if feeder is not None and feeder.is_alive():
            feeder.stop()
        job.stop()
        if collector is not None:
            collector.stop()
    if collector is None:
        return result
    _measure(result, collector)
    return result


def _start_and_wait_for_checkpoint(job: JobProcess, name: str) -> None:
    """Start the job and wait for its first completed checkpoint (it is then running)."""
    job.start()

    def running() -> bool:
        if not job.alive():
            raise OnceflowError(f"the job exited while starting:\n{job.log_tail(1500)}")
        return job.completed_checkpoints() >= 1

    wait_until(f"{name}: the job's first checkpoint", running, timeout=180)


def _feed_to_the_end(feeder: Feeder, collector: Collector, name: str) -> None:
    """Wait while the feeder sends the workload at its rate, logging progress."""
    started = last = time.monotonic()
    while feeder.is_alive():
        feeder.join(timeout=0.5)
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            log.info(
                "  %s: %4.0f s, %s fed (%.0f rec/s), %s seen read_committed",
                name,
                last - started,
                f"{feeder.sent:,}",
                feeder.sent / (last - started),
                f"{collector.count():,}",
            )
    if feeder.error is not None:
        raise OnceflowError(f"{name}: feeding failed: {feeder.error!r}")


def _measure(result: LatencyResult, collector: Collector) -> None:
    """Latency of a record: when the reader saw it - when it was produced; percentiles of all."""
    seen = collector.snapshot()
    result.outputs = len(seen)
    result.distinct = len({s.key for s in seen})
    latencies = sorted(float(s.seen_ms - s.produced_ms) for s in seen)
    if latencies:
        result.p50_ms = percentile(latencies, 50)
        result.p95_ms = percentile(latencies, 95)
        result.p99_ms = percentile(latencies, 99)
        result.max_ms = latencies[-1]
        result.mean_ms = sum(latencies) / len(latencies)
    if result.status == "ok" and result.outputs < result.expected_outputs:
        result.status = "failed"
        result.error = f"only {result.outputs} of {result.expected_outputs} outputs seen"

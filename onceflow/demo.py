"""``onceflow demo``: the dedup job end to end on the embedded default.

Steps (in the order :func:`run` takes them):

1. The local broker comes up (idempotent) unless ``--bootstrap`` points elsewhere.
2. Fresh topics ``demo-<stamp>-in/out/dlq``; the output and DLQ topics use
   ``LogAppendTime`` so their timestamps say when the job wrote each record.
3. ``onceflow produce``: 100k JSON records, 30% duplicates, 1% malformed.
4. The dedup job on the mini-cluster, bounded: it stops once it has consumed what
   the input held at start; its final checkpoint commits the last transactions.
5. ``onceflow check`` on the output and the DLQ (read_committed, exact multisets).
6. A summary: records in, unique out, duplicates dropped, DLQ, lost, duplicated,
   records/s.

Exit code 0 only when nothing was lost, duplicated or unexpected.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import project_root, run_dir
from onceflow.testing.drain import ConsumedRecord

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="use this Kafka instead of the local broker")
    parser.add_argument("--count", type=int, default=100_000, help="records (100000)")
    parser.add_argument("--duplicates", type=float, default=0.3, help="ratio (0.3)")
    parser.add_argument("--malformed", type=float, default=0.01, help="ratio (0.01)")
    parser.add_argument("--partitions", type=int, default=2, help="input partitions (2)")
    parser.add_argument("--parallelism", type=int, default=1, help="job parallelism (1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )


def _run_job(args: list[str], log_file: Path) -> float:
    """Run the job to completion with a periodic progress line; returns wall seconds."""
    start = time.monotonic()
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "onceflow.jobs.dedup", *args],
            cwd=project_root(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        while proc.poll() is None:
            time.sleep(5)
            if proc.poll() is None:
                print(f"  dedup job running: {time.monotonic() - start:5.0f} s", flush=True)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise OnceflowError(f"the dedup job failed ({proc.returncode}); log {log_file}:\n{tail}")
    return time.monotonic() - start


def _write_span_s(records: list[ConsumedRecord]) -> float:
    stamps = [r.timestamp for r in records]
    return (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else 0.0


def run(args: argparse.Namespace) -> int:
    from onceflow.testing.check import check_output, compare_dead_letters
    from onceflow.testing.drain import read_committed
    from onceflow.testing.produce import produce
    from onceflow.testing.workload import WorkloadSpec

    bootstrap = _bootstrap(args.bootstrap)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    topics = _create_topics(bootstrap, stamp, args.partitions)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=run_dir("demo")))
    spec = WorkloadSpec(
        count=args.count,
        duplicate_ratio=args.duplicates,
        malformed_ratio=args.malformed,
        seed=args.seed,
    )
    print(f"producing {spec.count} records to {topics['in']} ...", flush=True)
    exp = produce(bootstrap, topics["in"], spec, workdir / "expect.json.gz")
    print("running the dedup job on the local mini-cluster (bounded) ...", flush=True)
    wall = _run_job(_job_args(args, bootstrap, topics, stamp), workdir / "job.log")
    out = read_committed(bootstrap, topics["out"], quiet_ms=1500)
    dlq = read_committed(bootstrap, topics["dlq"], quiet_ms=1500)
    output = check_output(exp.unique_ids, out)
    dead = compare_dead_letters(exp.malformed_values, dlq)
    print(output.render())
    print(dead.render())
    span = _write_span_s(out + dlq)
    rate = f"{spec.count / span:,.0f} records/s while writing" if span > 0 else "n/a"
    print(
        "\nsummary\n"
        f"  records in          {spec.count:>9,}\n"
        f"  unique out          {len(out):>9,}  (expected {len(exp.unique_ids):,})\n"
        f"  duplicates dropped  {spec.count - exp.malformed - output.unique:>9,}\n"
        f"  dead letters        {len(dlq):>9,}  (expected {exp.malformed:,})\n"
        f"  lost                {output.missing + dead.missing:>9,}\n"
        f"  duplicated          {output.duplicated + dead.duplicated:>9,}\n"
        f"  throughput          {rate}; job wall time {wall:.1f} s incl. JVM start\n"
        f"  topics              {topics['in']} -> {topics['out']}, {topics['dlq']}\n"
        f"  job log             {workdir / 'job.log'}"
    )
    return 0 if output.ok and dead.ok else 1


def _bootstrap(given: str | None) -> str:
    """The given Kafka (``--bootstrap``, ``KAFKA_BOOTSTRAP``), else the local broker, brought up."""
    from onceflow.local.broker import LocalKafka

    bootstrap = given or os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        return bootstrap
    broker = LocalKafka()
    print(broker.up().render())
    return broker.bootstrap


def _create_topics(bootstrap: str, stamp: str, partitions: int) -> dict[str, str]:
    """Create fresh ``demo-<stamp>-in/out/dlq`` topics; returns them by role."""
    from onceflow.runtime.topics import ensure_topics

    topics = {k: f"demo-{stamp}-{k}" for k in ("in", "out", "dlq")}
    ensure_topics(bootstrap, {topics["in"]: {}}, partitions)
    # When the job wrote each record, not when it was produced upstream.
    append_time = {"message.timestamp.type": "LogAppendTime"}
    ensure_topics(bootstrap, {topics["out"]: append_time, topics["dlq"]: append_time}, 1)
    return topics


def _job_args(
    args: argparse.Namespace, bootstrap: str, topics: dict[str, str], stamp: str
) -> list[str]:
    """The bounded dedup job's command line: it stops once it has consumed the input."""
    return [
        "--bootstrap", bootstrap,
        "--input-topic", topics["in"],
        "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"],
        "--transactional-id-prefix", f"demo-{stamp}",
        "--group-id", f"demo-{stamp}",
        "--parallelism", str(args.parallelism),
        "--guarantee", args.guarantee,
        "--bounded",
    ]  # fmt: skip

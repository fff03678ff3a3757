"""What every contender shares: the run context, results, child processes, measurement.

Throughput method (one rule for every contender that writes an output topic):

* every output topic is created with ``message.timestamp.type=LogAppendTime``, so
  each record carries the *broker's* append time, whatever the client does with
  timestamps (Quix Streams forwards the input record's timestamp; Flink's Kafka
  sink leaves it to the producer);
* a transactional producer appends records when it sends them, not when it
  commits, so the first and last append times bracket the processing, without
  the job's start-up and without the final commit wait;
* throughput = input records processed / (last append time - first append time).

Exception: a Flink job whose output comes in bursts (process mode with a large
state cache releases a bundle's output at once) is timed from the moment all its
tasks ran (REST API) to the last append, and the method column says so.

Records processed is the whole input when the contender finished by itself; when
it hit the time box (process mode is slow), it is the sum of the consumer group's
committed offsets: Flink's ``KafkaSource`` commits them when a checkpoint completes
and Quix Streams / the EOS copier inside the transaction, so they count exactly
the input whose output is committed (the input topic is not transactional, its
offsets are contiguous).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import jars_dir, project_root, run_dir
from onceflow.testing.harness import ChildProcess
from onceflow.testing.workload import Expectation, WorkloadSpec

__all__ = [
    "BenchContext",
    "broker_pid",
    "wait_for_broker",
    "BenchSkipped",
    "Child",
    "ContenderResult",
    "OutputSpan",
    "Watched",
    "committed_input",
    "flink_tasks_running",
    "machine_info",
    "measure_output",
    "run_contender",
    "watch",
]

log = logging.getLogger(__name__)

#: Seconds between two progress lines while a contender runs.
PROGRESS_EVERY_S = 5.0
#: Output came in bursts when two consecutive appends are further apart than this
#: (a transactional sink appends continuously; commits do not pause the appends) ...
BURST_GAP_MS = 3_000
#: ... or when the job ran this long (and longer than the output span) before its
#: first output: continuous output starts within a few seconds of the tasks running.
BURST_SILENCE_S = 10.0


class BenchSkipped(OnceflowError):
    """A contender cannot run here; the message says why (it ends up in the report)."""


@dataclass
class ContenderResult:
    """One row of the throughput table.

    :param name: contender name (``--only`` matches it).
    :param family: ``kafka``, ``flink``, ``sql`` or ``quix``.
    :param config: the settings that differ between contenders, human-readable.
    :param status: ``ok``, ``failed`` or ``skipped``.
    :param records: input records processed in the measured span.
    :param seconds: the measured span.
    :param records_per_s: ``records / seconds``; None when not measured.
    :param method: how the figure was obtained.
    :param outputs: committed output records read back.
    :param distinct: distinct keys among them.
    :param expected_outputs: what an exact run writes for ``records`` inputs.
    :param exact: outputs are exactly the expected ones (None: not checked).
    :param time_boxed: stopped by the time box before the end of the input.
    :param wall_s: wall time of the whole contender, start-up included.
    :param load1: 1-minute load average when it started (noise from other work).
    :param error: why it failed or was skipped.
    :param extra: figures reported by the tool itself, log file, etc.
    """

    name: str
    family: str
    config: str
    status: str = "ok"
    records: int = 0
    seconds: float | None = None
    records_per_s: float | None = None
    method: str = ""
    outputs: int | None = None
    distinct: int | None = None
    expected_outputs: int | None = None
    exact: bool | None = None
    time_boxed: bool = False
    wall_s: float | None = None
    load1: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchContext:
    """One benchmark run: where Kafka is, the shared input topic and its expectation.

    :param bootstrap: Kafka bootstrap servers.
    :param run_id: ``YYYYmmdd-HHMMSS`` (UTC); names topics, files, groups.
    :param records: records of the shared input workload.
    :param partitions: partitions of the input and output topics.
    :param duplicates: duplicate share of the workload.
    :param seed: workload seed.
    :param time_box_s: longest a job-like contender may run (start-up included).
    :param out_dir: where results are written.
    """

    bootstrap: str
    run_id: str
    records: int
    partitions: int = 4
    duplicates: float = 0.2
    seed: int = 6
    time_box_s: float = 120.0
    out_dir: Path = field(default_factory=lambda: project_root() / "bench" / "results")
    input_topic: str = ""
    expectation: Expectation | None = None
    created_topics: list[str] = field(default_factory=list)
    #: Appended to the names and files of a contender that runs again (a repeat round
    #: ``-r2``, a retry ``-retry``): fresh topics, group, transactional prefix, logs.
    suffix: str = ""
    #: What a family's contenders share in one run (an input of their own, ...).
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def work_dir(self) -> Path:
        """Logs, checkpoints and payload files of this run (under ``run/``)."""
        return run_dir("bench", self.run_id)

    def spec(self, count: int | None = None, seed: int | None = None) -> WorkloadSpec:
        """The workload: JSON records of ~200 bytes, ``duplicates`` share, none malformed.

        No malformed records: the Flink SQL contender's JSON format would fail on
        them, and every contender must do the same work.
        """
        return WorkloadSpec(
            count=self.records if count is None else count,
            duplicate_ratio=self.duplicates,
            malformed_ratio=0.0,
            seed=self.seed if seed is None else seed,
            payload_bytes=200,
        )

    def name(self, hint: str) -> str:
        """A run-unique name for a topic, group or transactional id prefix."""
        return f"bench-{self.run_id}-{hint}{self.suffix}"

    def file(self, hint: str, ext: str = "") -> Path:
        """A contender's file or folder under :attr:`work_dir` (its log, its output files)."""
        return self.work_dir / f"{hint}{self.suffix}{ext}"

    def checkpoints(self, hint: str) -> Path:
        """A contender's checkpoint folder."""
        return self.work_dir / "checkpoints" / f"{hint}{self.suffix}"

    def create_topic(
        self,
        hint: str,
        partitions: int | None = None,
        *,
        output: bool = True,
        configs: dict[str, str] | None = None,
    ) -> str:
        """Create ``bench-<run>-<hint>``; output topics stamp records with the append time."""
        from onceflow.runtime.topics import ensure_topics

        name = self.name(hint)
        settings = {"message.timestamp.type": "LogAppendTime"} if output else {}
        ensure_topics(
            self.bootstrap, {name: {**settings, **(configs or {})}}, partitions or self.partitions
        )
        self.created_topics.append(name)
        return name

    def delete_topics(self) -> None:
        """Delete every topic this run created (the broker keeps no benchmark data)."""
        if not self.created_topics:
            return
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        try:
            admin.delete_topics(self.created_topics)
            log.info("deleted %d benchmark topics", len(self.created_topics))
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
            log.warning("could not delete the benchmark topics %s: %s", self.created_topics, exc)
        finally:
            admin.close()

    @property
    def expected_uniques(self) -> int:
        assert self.expectation is not None, "the input workload is not produced yet"
        return len(self.expectation.unique_ids)


# --------------------------------------------------------------- child processes


class Watched(Protocol):
    """What :func:`watch` needs of a running contender (``Child`` or ``JobProcess``)."""

    def alive(self) -> bool: ...

    def stop(self, timeout: float = 20.0) -> None: ...

    def log_tail(self, chars: int = 4000) -> str: ...


# A contender's process: the harness's, shared with the recovery tests and the verifier.
Child = ChildProcess


def _returncode(child: Watched) -> int | None:
    proc = getattr(child, "proc", None)
    return None if proc is None else proc.poll()


def watch(
    child: Watched,
    name: str,
    bootstrap: str,
    out_topic: str | None,
    time_box_s: float,
    expected_outputs: int | None = None,
    on_tick: Callable[[], object] | None = None,
) -> bool:
    """Wait for ``child`` to exit, logging progress; stop it when the time box is over.

    Every :data:`PROGRESS_EVERY_S` a line gives the elapsed time, the records
    written to ``out_topic`` so far (its high watermarks: written, not
    necessarily committed) and the rate since the previous line.

    :param on_tick: called about every 0.25 s while the child runs (its errors ignored).

    :returns: True if the child exited by itself, False if the time box stopped it.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = None
    tps: list[TopicPartition] = []
    if out_topic is not None:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_uncommitted",
        )
        tps = [TopicPartition(out_topic, p) for p in consumer.partitions_for_topic(out_topic) or []]

    def written() -> int:
        if consumer is None or not tps:
            return 0
        with contextlib.suppress(Exception):
            return int(sum(consumer.end_offsets(tps).values()))
        return 0

    started = time.monotonic()
    last_line, last_count = started, 0
    try:
        while child.alive():
            if on_tick is not None:
                with contextlib.suppress(Exception):
                    on_tick()
            now = time.monotonic()
            if now - started > time_box_s:
                log.info("%s: time box of %.0f s reached, stopping it", name, time_box_s)
                child.stop()
                return False
            if now - last_line >= PROGRESS_EVERY_S:
                count = written()
                rate = (count - last_count) / (now - last_line)
                of = f" of {expected_outputs:,}" if expected_outputs else ""
                what = f"{count:,}{of} output records written, {rate:,.0f} rec/s" if tps else ""
                log.info("  %s: %4.0f s %s", name, now - started, what)
                last_line, last_count = now, count
            time.sleep(0.25)
    finally:
        if consumer is not None:
            consumer.close()
    return True


# ------------------------------------------------------------------ measurement


@dataclass(frozen=True)
class OutputSpan:
    """What a read_committed reader finds in an output topic."""

    outputs: int
    distinct: int
    first_ms: int | None
    last_ms: int | None
    max_gap_ms: int = 0

    @property
    def seconds(self) -> float | None:
        if self.first_ms is None or self.last_ms is None:
            return None
        return (self.last_ms - self.first_ms) / 1000.0


def measure_output(bootstrap: str, topic: str) -> OutputSpan:
    """Read ``topic`` (read_committed) once: count, distinct keys, first/last append time."""
    from onceflow.testing.drain import read_committed

    records = read_committed(bootstrap, topic, quiet_ms=500, timeout_s=300, progress=False)
    if not records:
        return OutputSpan(0, 0, None, None)
    stamps = sorted(r.timestamp for r in records)
    return OutputSpan(
        outputs=len(records),
        distinct=len({r.key if r.key is not None else r.value for r in records}),
        first_ms=stamps[0],
        last_ms=stamps[-1],
        max_gap_ms=max((b - a for a, b in itertools.pairwise(stamps)), default=0),
    )


def flink_tasks_running(job: Any) -> Callable[[], float | None]:
    """A probe for :func:`run_contender`: when all tasks of ``job`` (a ``JobProcess``) ran.

    :returns: a function giving the latest vertex start time (epoch ms) once every
        vertex is RUNNING or FINISHED, else None.
    """

    def probe() -> float | None:
        jid = job.job_id()
        if jid is None:
            return None
        vertices = job.rest.job(jid).get("vertices", [])
        if not vertices or any(v.get("status") not in ("RUNNING", "FINISHED") for v in vertices):
            return None
        return float(max(v.get("start-time", 0) for v in vertices))

    return probe


def committed_input(bootstrap: str, group: str, topic: str) -> int:
    """Input records covered by ``group``'s committed offsets on ``topic`` (0 when none)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return int(sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset > 0))


def run_contender(
    ctx: BenchContext,
    result: ContenderResult,
    child: Watched,
    out_topic: str,
    group: str,
    *,
    start: Callable[[], object],
    exact_expected: bool = True,
    all_outputs: bool = False,
    tasks_running: Callable[[], float | None] | None = None,
    input_topic: str | None = None,
    input_records: int | None = None,
) -> ContenderResult:
    """Start ``child``, watch it, then measure ``out_topic`` by the module's method.

    :param group: consumer group whose committed offsets count the input when the
        time box stopped the child.
    :param exact_expected: the contender promises exactly the expected output
        (a dedup: each unique id once; a copier: every input once).
    :param all_outputs: the contender copies every input record (no dedup).
    :param input_topic: the topic the child reads when not the shared input (its
        group's committed offsets there count a time-boxed run's input).
    :param input_records: the records of ``input_topic`` when it holds another workload
        than the shared one (the expected outputs are then not known here).
    :param tasks_running: polled while the child runs; returns the epoch ms at which
        all its tasks ran (a Flink job's REST API), the fallback start of the span
        when the output comes in bursts.
    """
    result.load1 = os.getloadavg()[0]
    t0 = time.monotonic()
    expected: int | None = None
    if input_records is None:
        expected = ctx.records if all_outputs else ctx.expected_uniques
    running_ms: list[float] = []

    def probe() -> None:
        if tasks_running is not None and not running_ms:
            found = tasks_running()
            if found is not None:
                running_ms.append(found)

    start()
    finished = watch(
        child, result.name, ctx.bootstrap, out_topic, ctx.time_box_s, expected, on_tick=probe
    )
    result.wall_s = time.monotonic() - t0
    code = _returncode(child)
    if finished and code not in (0, None):
        result.status = "failed"
        result.error = f"exited with code {code}: {child.log_tail(1500)}"
        return result
    span = measure_output(ctx.bootstrap, out_topic)
    result.outputs, result.distinct = span.outputs, span.distinct
    result.time_boxed = not finished
    if finished:
        result.records = ctx.records if input_records is None else input_records
        result.expected_outputs = expected
    else:
        result.records = committed_input(ctx.bootstrap, group, input_topic or ctx.input_topic)
        result.expected_outputs = None
    if span.seconds is None or span.seconds <= 0 or result.records <= 0:
        result.status = "failed"
        result.error = (
            f"no measurable output span ({span.outputs} committed records in {out_topic}, "
            f"{result.records} inputs committed): see {getattr(child, 'log_file', '?')}"
        )
        return result
    result.seconds = span.seconds
    result.method = "input records / span of output append times"
    if running_ms and span.first_ms is not None and span.last_ms is not None:
        # Output held back and released at once (Python bundles in process mode) makes
        # the append-time span far shorter than the processing: time from the moment
        # every task ran instead (start-up of the Python workers included).
        since_running = (span.last_ms - running_ms[0]) / 1000.0
        silent_s = (span.first_ms - running_ms[0]) / 1000.0
        result.extra["seconds_since_tasks_running"] = round(since_running, 3)
        result.extra["max_output_gap_s"] = span.max_gap_ms / 1000.0
        if span.max_gap_ms > BURST_GAP_MS or silent_s > max(span.seconds, BURST_SILENCE_S):
            result.seconds = since_running
            result.method = (
                f"output came in bursts (append-time span {span.seconds:.1f} s): input "
                "records / (last output append - all tasks running)"
            )
    result.records_per_s = result.records / result.seconds
    if exact_expected:
        # A copy keeps the duplicates of the input (same key): only the count tells.
        # A time-boxed run can only be checked for duplicates, not for completeness.
        no_dupes = all_outputs or span.distinct == span.outputs
        result.exact = no_dupes and (not finished or span.outputs == expected)
    if result.time_boxed:
        result.method += " (time-boxed: input = committed offsets)"
    return result


# ----------------------------------------------------------------------- broker


def _local_broker(bootstrap: str) -> Any:
    """The project's own broker when ``bootstrap`` points at it, else None."""
    from onceflow.local.broker import BrokerSettings, LocalKafka

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host not in ("localhost", "127.0.0.1") or not port.isdigit():
        return None
    return LocalKafka(BrokerSettings(port=int(port)))


def broker_pid(bootstrap: str) -> int | None:
    """Pid of the local broker (None for another cluster): a change means it restarted.

    Other work on the machine (fault-injection tests) may restart the shared broker;
    a figure measured across a restart measures the outage, not the contender.
    """
    broker = _local_broker(bootstrap)
    return None if broker is None else broker.status().pid


def wait_for_broker(bootstrap: str, timeout_s: float = 180.0) -> None:
    """Block until the broker commits transactions again (it is never started here)."""
    from onceflow.local.broker import commit_probe_transaction

    broker = _local_broker(bootstrap)
    if broker is not None:
        broker.wait_ready(timeout_s)
    else:
        commit_probe_transaction(bootstrap)


# ---------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """nproc, memory, CPU model, OS and the versions of what is compared."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    java = ""
    with contextlib.suppress(Exception):
        from onceflow.runtime.java import java_executable

        out = subprocess.run(
            [java_executable(), "-version"], capture_output=True, text=True, timeout=30
        )
        java = (out.stderr or out.stdout).splitlines()[0]
    versions: dict[str, str] = {"python": platform.python_version(), "java": java}
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        versions["apache-flink"] = version("apache-flink")
    kafka_jars = sorted(jars_dir("kafka").glob("kafka-clients-*.jar"))
    if kafka_jars:
        versions["kafka"] = kafka_jars[0].stem.removeprefix("kafka-clients-")
    return {
        "nproc": os.cpu_count(),
        "memory_gib": mem_gib,
        "cpu_model": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }

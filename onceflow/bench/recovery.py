"""Recovery time: from a TaskManager's SIGKILL to the next committed output.

Protocol (runs last; the cluster is always stopped, in a ``finally``):

1. Start a standalone cluster of its own with two TaskManagers, on free ports
   and with its own conf/pid/log folders (a cluster someone else runs on the
   default ports is left alone).
2. Submit the dedup job detached (``flink run -d``), exactly-once, parallelism 2,
   checkpoints every 2 s, up to 20 restarts; wait until it checkpoints.
3. Feed it steadily (1,000 records/s, each with its produce time) and read its
   output read_committed; let it run steadily for a while.
4. SIGKILL a TaskManager that runs tasks of the job (found through the REST API:
   the TaskManager's data port -> the process listening on it) and start a new
   TaskManager right away, as a supervisor would.
5. Watch the job (state, restarts, checkpoints) until a record *produced after
   the kill* is committed: that gap is the recovery time a read_committed
   consumer experiences. Records produced before the kill can still be
   committed just after it (a checkpoint that completed before the kill), so
   they do not count.
6. Stop the feed, wait until every id fed is committed, and check that each
   was committed exactly once across the failure. Cancel the job, stop the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onceflow.bench.common import PROGRESS_EVERY_S, BenchContext
from onceflow.bench.flink_dedup import Variant, dedup_job_args
from onceflow.bench.stream import Collector, Feeder
from onceflow.errors import OnceflowError
from onceflow.local.cluster import LocalFlinkCluster
from onceflow.local.rest import FlinkRest, rest_get
from onceflow.testing.harness import free_port, wait_until

__all__ = ["RecoveryResult", "run_recovery"]

log = logging.getLogger(__name__)


@dataclass
class RecoveryResult:
    """What happened around the kill; times are ms after the SIGKILL."""

    name: str = "recovery"
    status: str = "ok"
    config: str = ""
    rate: float = 0.0
    gap_ms: float | None = None
    failure_detected_ms: float | None = None
    tasks_running_ms: float | None = None
    checkpoint_completed_ms: float | None = None
    restarts: int | None = None
    fed: int = 0
    expected_outputs: int = 0
    outputs: int = 0
    distinct: int = 0
    exact: bool | None = None
    killed: str = ""
    load1: float | None = None
    error: str | None = None
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BenchFlinkCluster(LocalFlinkCluster):
    """A standalone cluster of the benchmark's own: own ports, own conf/pid/log folders.

    Another engineer's cluster on the default ports (``make cluster-up``) is neither
    in the way nor touched: the daemon scripts' ``stop-all`` only reads this
    cluster's pid folder.

    :param taskmanagers: TaskManagers to start.
    :param home: folder for its conf/, log/, pid/ and lib/.
    """

    def __init__(self, taskmanagers: int, home: Path) -> None:
        super().__init__(taskmanagers=taskmanagers)
        self.home = home
        self.conf_dir = home / "conf"
        self.log_dir = home / "log"
        self.pid_dir = home / "pid"
        rest_port = free_port()
        self.config.setdefault("rest", {})["port"] = rest_port
        self.config.setdefault("jobmanager", {}).setdefault("rpc", {})["port"] = free_port()
        self.rest_url = f"http://localhost:{rest_port}"


# ------------------------------------------------------------ finding the victim


# ------------------------------------------------------------------ job views


def _job_id(rest_url: str, known: set[str]) -> str | None:
    # The cluster is the benchmark's own: any job that was not there before is ours.
    jobs = rest_get(rest_url, "/jobs/overview").get("jobs", [])
    fresh = [j for j in jobs if j["jid"] not in known]
    return max(fresh, key=lambda j: j.get("start-time", 0))["jid"] if fresh else None


def _job_view(rest_url: str, jid: str) -> dict[str, Any]:
    """State, whether every task runs, restarts and the last completed checkpoint's time."""
    rest = FlinkRest(rest_url)
    job = rest.get(f"/jobs/{jid}")
    counts = job.get("status-counts", {})
    tasks_running = job.get("state") == "RUNNING" and all(
        n == 0 for state, n in counts.items() if state not in ("RUNNING", "FINISHED")
    )
    view: dict[str, Any] = {"state": job.get("state"), "tasks_running": tasks_running}
    ckpt = rest.checkpoints(jid)
    if ckpt:
        view["completed"] = int(ckpt.get("counts", {}).get("completed", 0))
        latest = (ckpt.get("latest") or {}).get("completed") or {}
        view["latest_ack_ms"] = latest.get("latest_ack_timestamp")
    restarts = rest.restarts(jid)
    if restarts is not None:
        view["restarts"] = restarts
    return view


def _first_checkpoint_after(rest_url: str, jid: str, when_ms: float) -> float | None:
    """Ack time (epoch ms) of the first checkpoint completed after ``when_ms``, if any."""
    history = FlinkRest(rest_url).get(f"/jobs/{jid}/checkpoints").get("history", [])
    acks = [
        float(c["latest_ack_timestamp"])
        for c in history
        if c.get("status") == "COMPLETED" and (c.get("latest_ack_timestamp") or 0) > when_ms
    ]
    return min(acks) if acks else None


def _cancel(rest_url: str, jid: str) -> None:
    with contextlib.suppress(Exception):
        FlinkRest(rest_url).cancel(jid)


# ---------------------------------------------------------------------- protocol


def run_recovery(
    ctx: BenchContext, rate: float = 1000.0, steady_s: float = 10.0, timeout_s: float = 240.0
) -> RecoveryResult:
    """Run the module's protocol; never leaves a cluster it started running."""
    run = _RecoveryRun(ctx, rate)
    try:
        run.start_cluster()
        run.submit()
        run.feed_steadily(steady_s, timeout_s)
        run.kill_taskmanager()
        run.watch_until_recovered(timeout_s)
        run.wait_for_every_id()
    except OnceflowError as exc:
        run.result.status = "failed"
        run.result.error = str(exc)[-1500:]
    finally:
        run.stop()
    run.count_outputs()
    return run.result


class _RecoveryRun:
    """One run of the protocol: its cluster, topics, job, feed and reader."""

    name = "recovery"

    def __init__(self, ctx: BenchContext, rate: float) -> None:
        self.ctx = ctx
        self.rate = rate
        self.variant = Variant(parallelism=2)
        self.result = RecoveryResult(
            config=f"{self.variant.describe()}, 2 TaskManagers x 2 slots, checkpoint 2 s",
            rate=rate,
            load1=os.getloadavg()[0],
        )
        self.cluster = BenchFlinkCluster(taskmanagers=2, home=ctx.work_dir / "flink")
        self.topics = {
            "in": ctx.create_topic(f"{self.name}-in", output=False),
            "out": ctx.create_topic(self.name),
            "dlq": ctx.create_topic(f"{self.name}-dlq", 1),
        }
        self.collector: Collector | None = None
        self.feeder: Feeder | None = None
        self.jid: str | None = None
        self.restart: threading.Thread | None = None
        self.kill_ms = 0.0
        self.kill_t = 0.0
        self.t0 = time.monotonic()

    def note(self, what: str) -> None:
        """Log a step and add it to the timeline (seconds since the run started)."""
        self.result.timeline.append((round(time.monotonic() - self.t0, 2), what))
        log.info("  recovery: %s", what)

    def start_cluster(self) -> None:
        """Start the benchmark's own cluster with two TaskManagers."""
        self.cluster.up(timeout=180)
        self.note("cluster up (2 TaskManagers)")

    def submit(self) -> None:
        """Submit the dedup job detached and wait until it checkpoints."""
        rest_url = self.cluster.rest_url
        known = {j["jid"] for j in rest_get(rest_url, "/jobs/overview").get("jobs", [])}
        args = dedup_job_args(
            self.ctx, self.name, self.variant, self.topics, bounded=False, restart_attempts=20
        )
        code = self.cluster.submit("jobs/dedup.py", args, detached=True)
        if code != 0:
            raise OnceflowError(f"flink run -d exited {code}; see {self.cluster.log_dir}")
        wait_until("the job on the cluster", lambda: _job_id(rest_url, known) is not None, 60)
        jid = _job_id(rest_url, known)
        assert jid is not None
        self.jid = jid
        wait_until(
            "the job's first checkpoint",
            lambda: _job_view(rest_url, jid).get("completed", 0) >= 1,
            180,
        )
        self.note(f"job {jid} submitted and checkpointing")

    def feed_steadily(self, steady_s: float, timeout_s: float) -> None:
        """Feed the job at the rate, read its output read_committed, and let it run steadily."""
        self.collector = collector = Collector(self.ctx.bootstrap, self.topics["out"])
        collector.start()
        spec = self.ctx.spec(count=int(self.rate * timeout_s * 2))
        self.feeder = feeder = Feeder(self.ctx.bootstrap, self.topics["in"], spec, self.rate)
        feeder.start()
        wait_until("committed output in steady state", lambda: collector.count() > 0, 60)
        time.sleep(steady_s)
        self.note(f"steady: {feeder.sent:,} fed, {collector.count():,} committed")

    def kill_taskmanager(self) -> None:
        """SIGKILL a TaskManager that runs tasks of the job and start a new one at once."""
        assert self.jid is not None
        pids = self.cluster.taskmanager_pids()
        if not pids:
            raise OnceflowError(f"no TaskManager pids under {self.cluster.pid_dir}")
        hosting = self.cluster.job_taskmanager_pids(self.jid)
        pid = (hosting or pids)[0]
        why = (
            f"TaskManager pid {pid} runs job tasks"
            if hosting
            else f"pid {pid} (the TaskManagers running tasks could not be told apart)"
        )
        self.result.killed = why
        self.kill_ms = time.time() * 1000
        self.kill_t = time.monotonic()
        self.cluster.kill_taskmanager(pid)
        self.note(f"SIGKILL {why}")
        # The start script takes seconds: in the background, so the watch starts now.
        self.restart = threading.Thread(target=self.cluster.start_taskmanager, name="tm-restart")
        self.restart.start()
        self.note("starting a new TaskManager")

    def watch_until_recovered(self, timeout_s: float) -> None:
        """Watch the job until a record produced after the kill is committed.

        The REST views are polled, so their times are upper bounds (~0.2 s).
        """
        assert self.jid is not None and self.collector is not None and self.feeder is not None
        result = self.result
        restarts_before = _job_view(self.cluster.rest_url, self.jid).get("restarts", 0)
        last_line = time.monotonic()
        gap_found_at: float | None = None
        while time.monotonic() - self.kill_t < timeout_s:
            elapsed_ms = (time.monotonic() - self.kill_t) * 1000
            with contextlib.suppress(Exception):
                self._note_job_events(elapsed_ms, restarts_before)
            if result.gap_ms is None and self._note_gap():
                gap_found_at = time.monotonic()
            complete = result.tasks_running_ms is not None and result.checkpoint_completed_ms
            # Keep polling a little after the gap for the events the REST view shows late.
            if gap_found_at is not None and (complete or time.monotonic() - gap_found_at > 10):
                break
            if time.monotonic() - last_line >= PROGRESS_EVERY_S:
                last_line = time.monotonic()
                self.note(
                    f"waiting: {self.feeder.sent:,} fed, {self.collector.count():,} committed"
                )
            time.sleep(0.1)
        if result.gap_ms is None:
            raise OnceflowError(f"no output committed within {timeout_s:.0f} s after the kill")
        result.restarts = _job_view(self.cluster.rest_url, self.jid).get("restarts")

    def _note_job_events(self, elapsed_ms: float, restarts_before: int) -> None:
        """Note, once each, the failure seen, every task running again, and a new checkpoint."""
        assert self.jid is not None
        result = self.result
        view = _job_view(self.cluster.rest_url, self.jid)
        failed = view.get("state") != "RUNNING" or view.get("restarts", 0) > restarts_before
        if result.failure_detected_ms is None and failed:
            result.failure_detected_ms = elapsed_ms
            self.note(
                f"failure detected: job {view.get('state')}, {view.get('restarts', 0)} restart(s)"
            )
        if (
            result.failure_detected_ms is not None
            and result.tasks_running_ms is None
            and view.get("tasks_running")
        ):
            result.tasks_running_ms = elapsed_ms
            self.note("every task running again")
        if result.checkpoint_completed_ms is None:
            ack = _first_checkpoint_after(self.cluster.rest_url, self.jid, self.kill_ms)
            if ack is not None:
                result.checkpoint_completed_ms = ack - self.kill_ms
                self.note(
                    f"first checkpoint completed after the kill: +{ack - self.kill_ms:.0f} ms"
                )

    def _note_gap(self) -> bool:
        """Whether a record produced after the kill is committed (its gap is then noted).

        Records produced before the kill can be committed just after it, so they do not count.
        """
        assert self.collector is not None
        after = [s for s in self.collector.snapshot() if s.produced_ms > self.kill_ms]
        if not after:
            return False
        self.result.gap_ms = min(s.seen_ms for s in after) - self.kill_ms
        self.note(f"first committed output produced after the kill: +{self.result.gap_ms:.0f} ms")
        return True

    def wait_for_every_id(self) -> None:
        """Stop the feed and wait until every id fed is committed."""
        assert self.collector is not None and self.feeder is not None
        collector = self.collector
        time.sleep(3)
        self.feeder.stop()
        self.result.fed = self.feeder.sent
        self.result.expected_outputs = len(self.feeder.unique_ids)
        wait_until(
            "every fed id committed",
            lambda: collector.count() >= self.result.expected_outputs,
            timeout=120,
        )

    def stop(self) -> None:
        """Stop the feed, cancel the job, stop the reader and the cluster (always)."""
        if self.feeder is not None and self.feeder.is_alive():
            self.feeder.stop()
        if self.jid is not None:
            _cancel(self.cluster.rest_url, self.jid)
        if self.collector is not None:
            time.sleep(1)
            self.collector.stop()
        if self.restart is not None:
            self.restart.join(timeout=60)  # a TaskManager started after down() would be left over
        self.cluster.down()
        self.note("job cancelled, cluster stopped")

    def count_outputs(self) -> None:
        """Count the committed outputs and check each id fed was committed exactly once."""
        if self.collector is None:
            return
        result = self.result
        seen = self.collector.snapshot()
        result.outputs = len(seen)
        result.distinct = len({s.key for s in seen})
        if result.expected_outputs:
            result.exact = result.outputs == result.distinct == result.expected_outputs

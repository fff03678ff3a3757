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

__all__ = ["RecoveryResult", "run_recovery", "socket_owner"]

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


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if (
                    len(parts) > 9
                    and parts[3] == "0A"
                    and int(parts[1].rsplit(":", 1)[1], 16) == port
                ):
                    inodes.add(parts[9])
    return inodes


def socket_owner(port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` listens on TCP ``port`` (None when none does)."""
    inodes = _listening_inodes(port)
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
    return None


def _victim(rest_url: str, jid: str, pids: list[int]) -> tuple[int, str]:
    """A TaskManager pid that runs tasks of ``jid``, and how it was chosen."""
    job = rest_get(rest_url, f"/jobs/{jid}")
    hosting: list[str] = []
    for vertex in job.get("vertices", []):
        found = rest_get(rest_url, f"/jobs/{jid}/vertices/{vertex['id']}/taskmanagers")
        for tm in found.get("taskmanagers", []):
            if tm.get("taskmanager-id") not in hosting:
                hosting.append(tm["taskmanager-id"])
    for tm_id in hosting:
        port = rest_get(rest_url, f"/taskmanagers/{tm_id}").get("dataPort")
        if port:
            pid = socket_owner(int(port), pids)
            if pid is not None:
                return pid, f"TaskManager {tm_id} (pid {pid}, data port {port}) runs job tasks"
    return pids[0], f"pid {pids[0]} (the TaskManagers running tasks could not be told apart)"


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
    variant = Variant(parallelism=2)
    result = RecoveryResult(
        config=f"{variant.describe()}, 2 TaskManagers x 2 slots, checkpoint 2 s",
        rate=rate,
        load1=os.getloadavg()[0],
    )
    # Step 1.
    cluster = BenchFlinkCluster(taskmanagers=2, home=ctx.work_dir / "flink")
    name = "recovery"
    topics = {
        "in": ctx.create_topic(f"{name}-in", output=False),
        "out": ctx.create_topic(name),
        "dlq": ctx.create_topic(f"{name}-dlq", 1),
    }
    collector: Collector | None = None
    feeder: Feeder | None = None
    jid: str | None = None
    restart: threading.Thread | None = None
    t0 = time.monotonic()

    def note(what: str) -> None:
        result.timeline.append((round(time.monotonic() - t0, 2), what))
        log.info("  recovery: %s", what)

    try:
        cluster.up(timeout=180)
        note("cluster up (2 TaskManagers)")
        # Step 2.
        known = {j["jid"] for j in rest_get(cluster.rest_url, "/jobs/overview").get("jobs", [])}
        args = dedup_job_args(ctx, name, variant, topics, bounded=False, restart_attempts=20)
        code = cluster.submit("jobs/dedup.py", args, detached=True)
        if code != 0:
            raise OnceflowError(f"flink run -d exited {code}; see {cluster.log_dir}")
        wait_until(
            "the job on the cluster", lambda: _job_id(cluster.rest_url, known) is not None, 60
        )
        jid = _job_id(cluster.rest_url, known)
        assert jid is not None
        job_id = jid
        wait_until(
            "the job's first checkpoint",
            lambda: _job_view(cluster.rest_url, job_id).get("completed", 0) >= 1,
            180,
        )
        note(f"job {jid} submitted and checkpointing")
        # Step 3.
        collector = Collector(ctx.bootstrap, topics["out"])
        collector.start()
        spec = ctx.spec(count=int(rate * timeout_s * 2))
        feeder = Feeder(ctx.bootstrap, topics["in"], spec, rate)
        feeder.start()
        c = collector
        wait_until("committed output in steady state", lambda: c.count() > 0, 60)
        time.sleep(steady_s)
        note(f"steady: {feeder.sent:,} fed, {collector.count():,} committed")
        # Step 4.
        pids = cluster.taskmanager_pids()
        if not pids:
            raise OnceflowError(f"no TaskManager pids under {cluster.pid_dir}")
        pid, why = _victim(cluster.rest_url, jid, pids)
        result.killed = why
        kill_ms = time.time() * 1000
        kill_t = time.monotonic()
        cluster.kill_taskmanager(pid)
        note(f"SIGKILL {why}")
        # The start script takes seconds: in the background, so the watch starts now.
        restart = threading.Thread(target=cluster.start_taskmanager, name="tm-restart")
        restart.start()
        note("starting a new TaskManager")
        # Step 5. The REST views are polled, so their times are upper bounds (~0.2 s).
        restarts_before = _job_view(cluster.rest_url, jid).get("restarts", 0)
        last_line = time.monotonic()
        gap_found_at: float | None = None
        while time.monotonic() - kill_t < timeout_s:
            elapsed_ms = (time.monotonic() - kill_t) * 1000
            with contextlib.suppress(Exception):
                view = _job_view(cluster.rest_url, jid)
                failed = view.get("state") != "RUNNING" or view.get("restarts", 0) > restarts_before
                if result.failure_detected_ms is None and failed:
                    result.failure_detected_ms = elapsed_ms
                    note(
                        f"failure detected: job {view.get('state')}, "
                        f"{view.get('restarts', 0)} restart(s)"
                    )
                if (
                    result.failure_detected_ms is not None
                    and result.tasks_running_ms is None
                    and view.get("tasks_running")
                ):
                    result.tasks_running_ms = elapsed_ms
                    note("every task running again")
                if result.checkpoint_completed_ms is None:
                    ack = _first_checkpoint_after(cluster.rest_url, jid, kill_ms)
                    if ack is not None:
                        result.checkpoint_completed_ms = ack - kill_ms
                        note(f"first checkpoint completed after the kill: +{ack - kill_ms:.0f} ms")
            if result.gap_ms is None:
                after = [s for s in collector.snapshot() if s.produced_ms > kill_ms]
                if after:
                    result.gap_ms = min(s.seen_ms for s in after) - kill_ms
                    gap_found_at = time.monotonic()
                    note(f"first committed output produced after the kill: +{result.gap_ms:.0f} ms")
            complete = result.tasks_running_ms is not None and result.checkpoint_completed_ms
            # Keep polling a little after the gap for the events the REST view shows late.
            if gap_found_at is not None and (complete or time.monotonic() - gap_found_at > 10):
                break
            if time.monotonic() - last_line >= PROGRESS_EVERY_S:
                last_line = time.monotonic()
                note(f"waiting: {feeder.sent:,} fed, {collector.count():,} committed")
            time.sleep(0.1)
        if result.gap_ms is None:
            raise OnceflowError(f"no output committed within {timeout_s:.0f} s after the kill")
        result.restarts = _job_view(cluster.rest_url, jid).get("restarts")
        # Step 6.
        time.sleep(3)
        feeder.stop()
        result.fed = feeder.sent
        result.expected_outputs = len(feeder.unique_ids)
        wait_until(
            "every fed id committed",
            lambda: c.count() >= result.expected_outputs,
            timeout=120,
        )
    except OnceflowError as exc:
        result.status = "failed"
        result.error = str(exc)[-1500:]
    finally:
        if feeder is not None and feeder.is_alive():
            feeder.stop()
        if jid is not None:
            _cancel(cluster.rest_url, jid)
        if collector is not None:
            time.sleep(1)
            collector.stop()
        if restart is not None:
            restart.join(timeout=60)  # a TaskManager started after down() would be left over
        cluster.down()
        note("job cancelled, cluster stopped")
    if collector is not None:
        seen = collector.snapshot()
        result.outputs = len(seen)
        result.distinct = len({s.key for s in seen})
        if result.expected_outputs:
            result.exact = result.outputs == result.distinct == result.expected_outputs
    return result

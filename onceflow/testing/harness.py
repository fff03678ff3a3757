"""Running a job as a real process and watching it: the recovery tests' harness.

A :class:`JobProcess` is ``python -m onceflow.jobs.<name> ...`` in its own process group,
with its log in a file and the mini-cluster's REST API on a port of its own, so
the harness can read checkpoint and restart counts while it injects faults.
:func:`count_values` reads a topic with a chosen isolation level to see what a
sink has written (read_uncommitted) or committed (read_committed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from onceflow.errors import OnceflowError
from onceflow.local.rest import FlinkRest
from onceflow.runtime.paths import project_root

__all__ = ["ChildProcess", "JobProcess", "free_port", "count_values", "wait_until"]

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.5
) -> None:
    """Poll ``condition`` until true; :class:`OnceflowError` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise OnceflowError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_to_end(
    module: str, args: Sequence[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <args>`` from the project root until it exits (a
    ``--bounded`` job, a refused start, a tool); stdout and stderr are captured as text.

    :raises subprocess.TimeoutExpired: after ``timeout`` seconds.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def count_values(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 5.0
) -> list[bytes | None]:
    """Every value of ``topic`` readable now with ``isolation`` (a quick snapshot)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        values: list[bytes | None] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                values.extend(r.value for r in records)
            if all(consumer.position(tp) >= end[tp] for tp in tps):
                break
        return values
    finally:
        consumer.close()


class ChildProcess:
    """A command in its own process group, output appended to a log file.

    :param argv: the command.
    :param log_file: where stdout and stderr go.
    :param env: extra environment variables.
    """

    def __init__(
        self, argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_file = log_file
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=project_root(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
            )
        log.info("started %s (pid %s), log %s", self.argv[:3], self.proc.pid, self.log_file)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group (a graceful stop), SIGKILL it after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


#: The REST API caches checkpoint statistics for ``web.refresh-interval`` (3 s) and
#: fetches metrics every 10 s by default: too stale for a harness that acts right
#: after a checkpoint completes or a restart happens.
FRESH_REST_VIEWS = (
    "rest.cache.checkpoint-statistics.timeout=100 ms",
    "metrics.fetcher.update-interval=500 ms",
)


class JobProcess(ChildProcess):
    """One job on its own mini-cluster, in a child process group.

    :param module: the job module, e.g. ``onceflow.jobs.dedup``.
    :param args: the job's command-line flags.
    :param log_file: where its stdout and stderr go.
    :param rest_port: REST port of its mini-cluster (a free one when None).
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str],
        log_file: Path,
        rest_port: int | None = None,
    ) -> None:
        self.module = module
        self.rest_port = rest_port or free_port()
        self.args = [*args, "--flink-option", f"rest.port={self.rest_port}"]
        for option in FRESH_REST_VIEWS:
            self.args += ["--flink-option", option]
        super().__init__([sys.executable, "-m", module, *self.args], log_file)

    @property
    def rest_url(self) -> str:
        return f"http://localhost:{self.rest_port}"

    # REST views of the mini-cluster ---------------------------------------------------
    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)

    def job_id(self) -> str | None:
        """The id of the job on this mini-cluster, once it is submitted."""
        return self.rest.job_id()

    def checkpoint_stats(self) -> dict[str, Any]:
        """``/jobs/<id>/checkpoints`` of the job ({} before it runs or when unreachable)."""
        jid = self.job_id()
        return {} if jid is None else self.rest.checkpoints(jid)

    def checkpoint_counts(self) -> dict[str, int]:
        """``completed``, ``failed``, ``restored``... from ``/jobs/<id>/checkpoints``."""
        counts = self.checkpoint_stats().get("counts", {})
        return {k: int(v) for k, v in counts.items()}

    def completed_checkpoints(self) -> int:
        return self.checkpoint_counts().get("completed", 0)

    def checkpoint_completion_times(self) -> list[tuple[int, float]]:
        """``(id, epoch seconds)`` of each completed checkpoint in Flink's history."""
        history = self.checkpoint_stats().get("history") or []
        return [
            (int(entry["id"]), entry["latest_ack_timestamp"] / 1000)
            for entry in history
            if entry.get("status") == "COMPLETED" and entry.get("latest_ack_timestamp")
        ]

    def failure_times(self) -> list[float]:
        """Epoch seconds of each failure in the job's exception history."""
        jid = self.job_id()
        return [] if jid is None else self.rest.failure_times(jid)

    def latest_checkpoint_id(self, kind: str) -> int | None:
        """Id of the latest ``completed`` or ``restored`` checkpoint, None when none."""
        latest = (self.checkpoint_stats().get("latest") or {}).get(kind) or {}
        return int(latest["id"]) if "id" in latest else None

    def restarts(self) -> int:
        """How often the job restarted (the ``numRestarts`` job metric)."""
        jid = self.job_id()
        return 0 if jid is None else self.rest.restarts(jid) or 0

"""The lifecycle of a job on a Flink cluster: list, watch, stop with a savepoint, cancel,
and explain a resume that cannot restore its state.

Used by ``onceflow cluster jobs|stop|cancel|submit`` and by the verifier (which
stops, cancels and resumes jobs as faults). Everything goes through the one REST
client (:class:`onceflow.local.rest.FlinkRest`); submitting is
:meth:`onceflow.local.cluster.LocalFlinkCluster.start_job`.

Delivery guarantee across these steps: a stop with a savepoint commits the Kafka
sink's last transactions before the tasks finish, so nothing stays open and a
resume from the savepoint continues exactly where the output ends. A cancel (or
a crash) leaves the transactions of the last checkpoint to the resume from that
checkpoint, which commits them; see :mod:`onceflow.ops.transactions` for what
not to abort meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onceflow.errors import OnceflowError
from onceflow.local.rest import FlinkRest

__all__ = [
    "ENDED",
    "CheckpointRef",
    "JobSummary",
    "StateNotRestored",
    "explain_restore_failure",
    "latest_checkpoint",
    "list_jobs",
    "render_jobs",
    "resolve_job",
    "stop_with_savepoint",
    "tasks_running",
    "wait_ended",
    "wait_running",
]

log = logging.getLogger(__name__)

ENDED = ("CANCELED", "FINISHED", "FAILED")


class StateNotRestored(OnceflowError):
    """A resume whose savepoint or checkpoint state does not fit the new job."""


@dataclass(frozen=True)
class CheckpointRef:
    """A completed checkpoint or savepoint of a job."""

    id: int
    path: str | None
    completed_ms: int
    savepoint: bool = False

    def age_s(self, now_ms: int | None = None) -> float:
        return max(0.0, ((now_ms or int(time.time() * 1000)) - self.completed_ms) / 1000)


@dataclass(frozen=True)
class JobSummary:
    """One job as ``onceflow cluster jobs`` shows it."""

    job_id: str
    name: str
    state: str
    parallelism: int | None
    start_ms: int
    end_ms: int
    last_checkpoint: CheckpointRef | None

    def to_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        cp = self.last_checkpoint
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "parallelism": self.parallelism,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "last_checkpoint": None
            if cp is None
            else {**cp.__dict__, "age_s": round(cp.age_s(now_ms), 1)},
        }


def _checkpoint_ref(stats: dict[str, Any]) -> CheckpointRef | None:
    """The newest completed checkpoint or savepoint in a ``/checkpoints`` answer."""
    latest = stats.get("latest") or {}
    found = [c for c in (latest.get("completed"), latest.get("savepoint")) if c]
    if not found:
        return None
    newest = max(found, key=lambda c: int(c.get("latest_ack_timestamp") or 0))
    return CheckpointRef(
        id=int(newest.get("id", 0)),
        path=newest.get("external_path") or None,
        completed_ms=int(newest.get("latest_ack_timestamp") or 0),
        savepoint=bool(newest.get("is_savepoint")),
    )


def list_jobs(rest: FlinkRest) -> list[JobSummary]:
    """Every job the cluster knows (running ones first, then newest first)."""
    out = []
    for job in rest.jobs():
        jid = str(job["jid"])
        detail = rest.job(jid)
        parallelism = max((int(v.get("parallelism", 0)) for v in detail.get("vertices", [])),
                          default=None)  # fmt: skip
        out.append(
            JobSummary(
                job_id=jid,
                name=str(job.get("name", "")),
                state=str(job.get("state", "UNKNOWN")),
                parallelism=parallelism,
                start_ms=int(job.get("start-time", 0)),
                end_ms=int(job.get("end-time", -1)),
                last_checkpoint=_checkpoint_ref(rest.checkpoints(jid)),
            )
        )
    return sorted(out, key=lambda j: (j.state in ENDED, -j.start_ms))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_jobs(jobs: list[JobSummary], now_ms: int | None = None) -> str:
    """The table of ``onceflow cluster jobs``."""
    if not jobs:
        return "no jobs"
    lines = [f"{'JOB ID':<32}  {'NAME':<24} {'STATE':<10} {'P':>2}  LAST CHECKPOINT"]
    for j in jobs:
        cp = j.last_checkpoint
        checkpoint = (
            "none"
            if cp is None
            else f"{'savepoint' if cp.savepoint else '#' + str(cp.id)} {_age(cp.age_s(now_ms))}"
            f"  {cp.path or '(not retained)'}"
        )
        p = j.parallelism or "?"
        lines.append(f"{j.job_id:<32}  {j.name[:24]:<24} {j.state:<10} {p:>2}  {checkpoint}")
    return "\n".join(lines)


def resolve_job(rest: FlinkRest, job: str | None, *, live: bool = True) -> str:
    """A job id from an id, a job name, or nothing (the only running job).

    :raises OnceflowError: no such job, or more than one fits.
    """
    jobs = rest.jobs()
    if job and any(j.get("jid") == job for j in jobs):
        return job
    candidates = [
        j
        for j in jobs
        if (job is None or j.get("name") == job) and not (live and j.get("state") in ENDED)
    ]
    if len(candidates) == 1:
        return str(candidates[0]["jid"])
    what = f"named or with id {job!r}" if job else "running"
    if not candidates:
        raise OnceflowError(f"no job {what} on {rest.url}; `onceflow cluster jobs` lists them")
    ids = ", ".join(f"{j['jid']} ({j.get('name')}, {j.get('state')})" for j in candidates)
    raise OnceflowError(f"more than one job {what}: {ids}; name one by its id")


def tasks_running(rest: FlinkRest, jid: str) -> bool:
    """Whether the job and every one of its vertices are RUNNING.

    With region failover a job stays RUNNING while its tasks restart; a savepoint
    or a fault then meets a job that is not running at all.
    """
    job = rest.job(jid)
    vertices = job.get("vertices") or []
    return job.get("state") == "RUNNING" and all(v.get("status") == "RUNNING" for v in vertices)


def completed_checkpoints(rest: FlinkRest, jid: str) -> int:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return int(rest.checkpoints(jid)["counts"]["completed"])
    return 0


def wait_running(
    rest: FlinkRest,
    jid: str,
    *,
    checkpoint_after: int | None = None,
    timeout: float = 180,
    fail_on_restore_error: bool = False,
) -> None:
    """Until every task is RUNNING (and, with ``checkpoint_after``, the job has completed
    more checkpoints than that). Without ``checkpoint_after`` a FINISHED job (a bounded
    one that consumed its input) counts as done too.

    :param fail_on_restore_error: raise :class:`StateNotRestored` as soon as the job's
        failures show that its state cannot be restored (it would restart forever).
    :raises OnceflowError: the job ended, or did not get there within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(rest.job(jid).get("state", ""))
        if fail_on_restore_error:
            for trace in rest.exceptions(jid):
                explained = explain_restore_failure(trace)
                if explained:
                    raise StateNotRestored(explained)
        if state == "FINISHED" and checkpoint_after is None:
            return  # a bounded job that has already consumed its input
        if state in ENDED:
            causes = rest.exceptions(jid)
            cause = causes[0].strip().splitlines()[0] if causes and causes[0].strip() else ""
            raise OnceflowError(f"job {jid} is {state}{': ' + cause if cause else ''}")
        done = checkpoint_after is None or completed_checkpoints(rest, jid) > checkpoint_after
        if done and tasks_running(rest, jid):
            return
        time.sleep(0.5)
    raise OnceflowError(f"job {jid} did not run (and checkpoint) within {timeout:.0f} s")


def wait_ended(rest: FlinkRest, jid: str, timeout: float = 120) -> str:
    """Until the job is CANCELED, FINISHED or FAILED; returns that state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(rest.job(jid).get("state", ""))
        if state in ENDED:
            return state
        time.sleep(0.5)
    raise OnceflowError(f"job {jid} did not stop within {timeout:.0f} s")


def stop_with_savepoint(
    rest: FlinkRest,
    jid: str,
    target_dir: str | None = None,
    *,
    attempts: int = 3,
    drain: bool = False,
) -> str:
    """Stop the job with a savepoint and wait until it has ended; returns the path.

    A savepoint fails when a task is not running (a failover going on just then):
    wait until every task runs again with a fresh checkpoint, and retry.
    """
    for attempt in range(1, attempts + 1):
        try:
            path = rest.stop_with_savepoint(jid, target_dir, drain=drain)
            wait_ended(rest, jid)
            return path
        except OnceflowError:
            if attempt == attempts or rest.job(jid).get("state") != "RUNNING":
                raise
            log.warning("stop-with-savepoint failed (attempt %d); retrying once recovered", attempt)
            wait_running(rest, jid, checkpoint_after=completed_checkpoints(rest, jid))
    raise AssertionError("unreachable")


def latest_checkpoint(
    rest: FlinkRest, jid: str, checkpoint_dir: Path | None = None
) -> CheckpointRef | None:
    """The newest retained checkpoint (or savepoint) of job ``jid``.

    The JobManager answers for the jobs it remembers; after a cluster restart the
    checkpoint folder (``<checkpoint_dir>/<jid>/chk-<n>/_metadata``) does.
    """
    ref = _checkpoint_ref(rest.checkpoints(jid))
    if ref is not None and ref.path:
        return ref
    if checkpoint_dir is None:
        return None
    found = []
    for metadata in (checkpoint_dir / jid).glob("chk-*/_metadata"):
        match = re.fullmatch(r"chk-(\d+)", metadata.parent.name)
        if match:
            found.append((int(match.group(1)), metadata))
    if not found:
        return None
    n, metadata = max(found)
    return CheckpointRef(n, metadata.parent.as_uri(), int(metadata.stat().st_mtime * 1000))


_UNMAPPED = re.compile(
    r"Cannot map checkpoint/savepoint state for operator (\w+) to the new program"
)


def explain_restore_failure(text: str) -> str | None:
    """What to tell the user when Flink's output or a job failure ``text`` says the
    savepoint's state does not fit the new job; None when it says nothing of the kind."""
    unmapped = _UNMAPPED.search(text)
    if unmapped:
        return (
            f"the savepoint holds state of operator {unmapped.group(1)} that the new job does "
            "not have: an operator's uid was changed or removed (onceflow's jobs use `dedup`, "
            "`versioned-update` and one uid per sink; a different job or a job built from "
            "other code has others). Keep every stateful operator's uid as it was to resume "
            "its state, or submit again with --allow-non-restored-state to drop the state of "
            "the operators the new job lacks (for a dedup operator: ids seen before pass again)"
        )
    if "StateMigrationException" in text or ("incompatible" in text and "serializer" in text):
        return (
            "the new job's state type does not match the savepoint's (Flink could not migrate "
            "a state serializer: a state descriptor changed its type or name under the same "
            "uid). Resume with the old state types, or give the changed operator a new uid and "
            "drop its old state with --allow-non-restored-state"
        )
    if "max parallelism" in text.lower() and ("smaller" in text or "exceed" in text):
        return (
            "the new parallelism exceeds the savepoint's max parallelism (the number of key "
            "groups, fixed when the job first started); choose a parallelism up to it"
        )
    if re.search(r"(FileNotFoundException|Cannot access file system|does not exist).*"
                 r"(savepoint|_metadata|chk-)", text):  # fmt: skip
        return "the savepoint or checkpoint path does not exist (or holds no _metadata)"
    return None

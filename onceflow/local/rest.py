"""One client for Flink's REST API: jobs, checkpoints, restarts, failures, cancel, stop.

Used by the job harness (a mini-cluster per job), the job lifecycle commands
(:mod:`onceflow.local.jobs`), the verifier and the benchmarks (the standalone
cluster). The views are for watching a job while faults happen, so an
unreachable or restarting cluster is an empty answer (``None``, ``{}``, ``[]``,
0), never an exception; :meth:`FlinkRest.get` is the raw call for anything else.
The actions (:meth:`FlinkRest.cancel`, :meth:`FlinkRest.stop_with_savepoint`)
raise when they fail.

The REST API caches checkpoint statistics (``rest.cache.checkpoint-statistics.
timeout``) and fetches metrics periodically (``metrics.fetcher.update-interval``):
the local cluster and the harness shorten both, or these views lag by seconds.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

from onceflow.errors import OnceflowError

__all__ = ["FlinkRest", "rest_get"]

_ENDED = ("CANCELED", "FINISHED", "FAILED")


def rest_get(url: str, path: str, timeout: float = 5.0) -> Any:
    """GET ``url + path`` from Flink's REST API as JSON (raises on any failure)."""
    with urllib.request.urlopen(f"{url}{path}", timeout=timeout) as response:
        return json.load(response)


class FlinkRest:
    """Views of the jobs of one Flink cluster.

    :param url: the REST endpoint, e.g. ``http://localhost:8081``.
    :param timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout

    def get(self, path: str, timeout: float | None = None) -> Any:
        """The raw JSON answer of ``path`` (raises on any failure)."""
        return rest_get(self.url, path, self.timeout if timeout is None else timeout)

    def _try(self, path: str, empty: Any) -> Any:
        with contextlib.suppress(OSError, ValueError):
            found = self.get(path)
            if isinstance(found, type(empty)):
                return found
        return empty

    def jobs(self) -> list[dict[str, Any]]:
        """``/jobs/overview``: every job the cluster knows, newest state included."""
        return list(self._try("/jobs/overview", {}).get("jobs", []))

    def job_id(self, name: str | None = None, *, live: bool = False) -> str | None:
        """The newest job (named ``name``, if given; still running, with ``live``)."""
        found = [
            j
            for j in self.jobs()
            if (name is None or j.get("name") == name) and not (live and j.get("state") in _ENDED)
        ]
        return str(max(found, key=lambda j: j.get("start-time", 0))["jid"]) if found else None

    def job(self, jid: str) -> dict[str, Any]:
        """``/jobs/<id>``: state, vertices, status counts ({} when unreachable)."""
        return dict(self._try(f"/jobs/{jid}", {}))

    def checkpoints(self, jid: str) -> dict[str, Any]:
        """``/jobs/<id>/checkpoints``: counts, latest and history ({} when unreachable)."""
        return dict(self._try(f"/jobs/{jid}/checkpoints", {}))

    def restarts(self, jid: str) -> int | None:
        """The ``numRestarts`` job metric, or None when it cannot be read."""
        for metric in self._try(f"/jobs/{jid}/metrics?get=numRestarts", []):
            if metric.get("id") == "numRestarts":
                return int(float(metric.get("value", 0)))
        return None

    def failure_times(self, jid: str) -> list[float]:
        """Epoch seconds of each failure in the job's exception history."""
        history = self._try(f"/jobs/{jid}/exceptions", {}).get("exceptionHistory") or {}
        return [entry["timestamp"] / 1000 for entry in history.get("entries", [])]

    def exceptions(self, jid: str) -> list[str]:
        """The job's failures, newest first: each entry's stack trace (or its name)."""
        found = self._try(f"/jobs/{jid}/exceptions", {})
        entries = (found.get("exceptionHistory") or {}).get("entries", [])
        traces = [str(e.get("stacktrace") or e.get("exceptionName") or "") for e in entries]
        root = found.get("root-exception")
        if root and not traces:
            traces.append(str(root))
        return traces

    def cancel(self, jid: str) -> None:
        """Cancel the job (its retained checkpoints stay); raises when the call fails."""
        request = urllib.request.Request(f"{self.url}/jobs/{jid}?mode=cancel", method="PATCH")
        urllib.request.urlopen(request, timeout=10).close()

    def post(self, path: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
        """POST ``body`` as JSON to ``path``; the JSON answer (raises on any failure)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def stop_with_savepoint(
        self, jid: str, target_dir: str | None = None, *, drain: bool = False, timeout: float = 300
    ) -> str:
        """Stop the job with a savepoint; returns the savepoint's path once it completed.

        Flink takes a synchronous savepoint, commits the sinks' transactions of it
        (the Kafka sink's last transactions are committed, none is left open) and
        finishes the tasks.

        :param target_dir: savepoint folder (URI); None uses the cluster's
            ``execution.checkpointing.savepoint-dir``.
        :param drain: emit MAX_WATERMARK first (fires every event-time timer; for a job
            that will not be resumed).
        :raises OnceflowError: the request was refused, the savepoint failed (the job
            keeps running then, e.g. when a task is not running), or it timed out.
        """
        body: dict[str, Any] = {"drain": drain}
        if target_dir:
            body["targetDirectory"] = target_dir
        try:
            trigger = self.post(f"/jobs/{jid}/stop", body)["request-id"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            raise OnceflowError(f"Flink refused to stop job {jid} with a savepoint: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                answer = self.get(f"/jobs/{jid}/savepoints/{trigger}")
                if (answer.get("status") or {}).get("id") == "COMPLETED":
                    operation = answer.get("operation") or {}
                    if operation.get("location"):
                        return str(operation["location"])
                    cause = operation.get("failure-cause") or {}
                    raise OnceflowError(
                        f"stop-with-savepoint of job {jid} failed: "
                        f"{_first_line(cause.get('stack-trace') or cause.get('class') or cause)}"
                    )
            time.sleep(0.5)
        raise OnceflowError(f"stop-with-savepoint of job {jid} did not finish in {timeout:.0f} s")


def _first_line(text: object) -> str:
    """The first line of a Java stack trace (its exception and message)."""
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else "unknown cause"

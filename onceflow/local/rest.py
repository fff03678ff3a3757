"""One client for Flink's REST API: jobs, checkpoints, restarts, failures, cancel.

Used by the job harness (a mini-cluster per job), the verifier and the
benchmarks (the standalone cluster). The views are for watching a job while
faults happen, so an unreachable or restarting cluster is an empty answer
(``None``, ``{}``, ``[]``, 0), never an exception; :meth:`FlinkRest.get` is the
raw call for anything else.

The REST API caches checkpoint statistics (``rest.cache.checkpoint-statistics.
timeout``) and fetches metrics periodically (``metrics.fetcher.update-interval``):
the local cluster and the harness shorten both, or these views lag by seconds.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from typing import Any

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

    def cancel(self, jid: str) -> None:
        """Cancel the job (its retained checkpoints stay); raises when the call fails."""
        request = urllib.request.Request(f"{self.url}/jobs/{jid}?mode=cancel", method="PATCH")
        urllib.request.urlopen(request, timeout=10).close()

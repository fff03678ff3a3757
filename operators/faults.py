"""Failure injection for recovery tests and the verifier (pure: no pyflink import).

An operator armed with a set of record ids calls :func:`inject_failure_once`
when one arrives: the first time it raises :class:`InjectedFailure`, which fails
the task and makes Flink restart from the last completed checkpoint; the replay
of the same record then passes. Python in thread mode cannot ask Flink for the
attempt number, so "once" is remembered in a marker file ``<id>.fired`` (its
content is the wall-clock time it fired), which survives restarts and resubmits.
The file is named by :func:`marker_stem` of the id (safe characters only).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FaultPoints",
    "InjectedFailure",
    "arm_faults",
    "armed_faults",
    "inject_failure_once",
    "marker_stem",
]


class InjectedFailure(RuntimeError):
    """Raised on purpose by an armed operator."""


def inject_failure_once(marker_dir: str | None, what: str) -> None:
    """Raise :class:`InjectedFailure` unless ``<marker_dir>/<what>.fired`` exists.

    The marker is written before raising, so the replay after the restart passes.
    ``marker_dir=None`` disarms it.
    """
    if marker_dir is None:
        return
    marker = os.path.join(marker_dir, f"{marker_stem(what)}.fired")
    if os.path.exists(marker):
        return
    os.makedirs(marker_dir, exist_ok=True)
    with open(marker, "w") as f:
        f.write(f"{time.time()}\n")
    raise InjectedFailure(f"injected failure at {what!r}")


def marker_stem(what: str) -> str:
    """The marker file's name without ``.fired``: ``what`` in file-name-safe characters."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", what)[:200]


_PARAMETER: Final = "onceflow.faults.{uid}.{what}"


@dataclass(frozen=True)
class FaultPoints:
    """Where an operator fails once: the points armed for it and the marker folder."""

    points: frozenset[str] = frozenset()
    marker_dir: str | None = None

    def maybe_fail(self, what: str) -> None:
        """Fail once if ``what`` is armed (see :func:`inject_failure_once`)."""
        if what in self.points:
            inject_failure_once(self.marker_dir, what)


NO_FAULTS: Final = FaultPoints()


def arm_faults(env: Any, uid: str, points: Iterable[str], marker_dir: str) -> None:
    """Arm the operator ``uid`` of the job built on ``env`` to fail once at each point.

    A test hook, outside the operators' constructors: the points travel as
    Flink global job parameters (``onceflow.faults.<uid>.points`` and ``.dir``),
    which the operator reads when it opens (:func:`armed_faults`).
    """
    config = env.get_config()
    parameters = dict(config.get_global_job_parameters() or {})
    parameters[_PARAMETER.format(uid=uid, what="points")] = json.dumps(sorted(points))
    parameters[_PARAMETER.format(uid=uid, what="dir")] = marker_dir
    config.set_global_job_parameters(parameters)


def armed_faults(runtime_context: Any, uid: str) -> FaultPoints:
    """The fault points armed for operator ``uid`` (none unless :func:`arm_faults` ran)."""
    points = runtime_context.get_job_parameter(_PARAMETER.format(uid=uid, what="points"), "")
    if not points:
        return NO_FAULTS
    marker_dir = runtime_context.get_job_parameter(_PARAMETER.format(uid=uid, what="dir"), "")
    return FaultPoints(frozenset(json.loads(points)), marker_dir or None)

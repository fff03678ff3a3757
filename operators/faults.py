"""Failure injection for recovery tests and the verifier (pure: no pyflink import).

A test hook, outside the operators' constructors: :func:`arm_faults` registers
fault points for an operator uid in the process that builds the job (the jobs'
``--fail-on-id``/``--fail-on-change``, or ``$ONCEFLOW_FAULTS`` for any job); the
operator built after it carries them (:func:`armed_faults`) and calls
:func:`inject_failure_once` when one arrives: the first time it raises
:class:`InjectedFailure`, which fails the task and makes Flink restart from the
last completed checkpoint; the replay of the same record then passes. Python in thread mode cannot ask Flink for the
attempt number, so "once" is remembered in a marker file ``<id>.fired`` (its
content is the wall-clock time it fired), which survives restarts and resubmits.
The file is named by :func:`marker_stem` of the id (safe characters only).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

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

# Armed fault points by operator uid, in the process that builds the job.
_ARMED: dict[str, FaultPoints] = {}


def arm_faults(uid: str, points: Iterable[str], marker_dir: str) -> None:
    """Arm the operator ``uid`` built after this call to fail once at each point.

    A test hook, outside the operators' constructors: the operator reads the
    points when it is built (:func:`armed_faults`) and carries them to the
    cluster with its code.
    """
    _ARMED[uid] = FaultPoints(frozenset(points), marker_dir)


def armed_faults(uid: str) -> FaultPoints:
    """The fault points armed for operator ``uid`` (none unless :func:`arm_faults` ran)."""
    return _ARMED.get(uid, NO_FAULTS)

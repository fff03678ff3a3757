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

import os
import re
import time

__all__ = ["InjectedFailure", "inject_failure_once", "marker_stem"]


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

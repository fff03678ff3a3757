"""Which path an operator takes: Flink's own JVM operators when its spec allows, or Python.

The user does not choose (``path="auto"``): each operator takes the JVM path when
its input and spec allow it, logs which path it took and why, and a flag forces
either one.
"""

from __future__ import annotations

import logging
from typing import Final

from onceflow.errors import OnceflowError

__all__ = ["PATHS", "choose_path"]

log = logging.getLogger(__name__)

PATHS: Final = ("auto", "jvm", "python")
"""An operator's ``path=``: auto (the JVM path when the spec allows), jvm, python."""


def choose_path(operator: str, path: str, uid: str, *, jvm_possible: bool, jvm_needs: str) -> str:
    """The path ``operator`` ``uid`` takes (logged): jvm when possible, unless forced.

    :param jvm_needs: what the JVM path needs, for the refusal of ``path='jvm'``.
    :raises OnceflowError: on an unknown path, or ``jvm`` where it is not possible.
    """
    if path not in PATHS:
        raise OnceflowError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
    if path == "jvm" and not jvm_possible:
        raise OnceflowError(
            f"{operator} {uid!r}: path='jvm' needs {jvm_needs}; other input runs on the "
            "Python path (use path='auto' or 'python')"
        )
    chosen = "jvm" if jvm_possible and path != "python" else "python"
    if path == chosen:
        why = "forced"
    else:
        why = "the spec allows it" if chosen == "jvm" else "the spec needs Python"
    log.info("%s %r takes the %s path (%s)", operator, uid, chosen, why)
    return chosen

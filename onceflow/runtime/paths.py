"""Where onceflow keeps its files.

Everything downloaded or generated lives in git-ignored folders under the
project root: ``.cache/jars`` (Java artifacts resolved by ``make jars``) and
``run/`` (broker data and logs, the Flink cluster's config copy, checkpoints).
``ONCEFLOW_HOME`` overrides the root (e.g. for an installed, non-editable copy).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "project_root",
    "jars_dir",
    "run_dir",
    "venv_python",
    "flink_home",
]


def project_root() -> Path:
    """The onceflow checkout: ``$ONCEFLOW_HOME`` or the folder holding pyproject.toml."""
    env = os.environ.get("ONCEFLOW_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "onceflow").is_dir():
            return candidate
    return Path.cwd().resolve()


def jars_dir(kind: str) -> Path:
    """Folder of resolved jars: ``kind`` is ``kafka`` (broker, tools) or ``flink`` (connectors)."""
    return project_root() / ".cache" / "jars" / kind


def run_dir(*parts: str) -> Path:
    """A folder under ``run/`` (created on demand)."""
    path = project_root().joinpath("run", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def venv_python() -> str:
    """The interpreter Flink's Python workers must use: the one running onceflow.

    Flink starts ``python`` from PATH otherwise, which is not the venv and has no
    pyflink (every task then fails with ModuleNotFoundError).
    """
    return sys.executable


def flink_home() -> Path:
    """The Flink distribution shipped inside the pip-installed ``apache-flink``."""
    import pyflink  # local import: the unit tier never needs the JVM side

    return Path(pyflink.__file__).resolve().parent

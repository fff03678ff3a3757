"""Where onceflow keeps its files, in a checkout and in an installed copy.

A source checkout keeps everything downloaded or generated in git-ignored
folders under its root: ``.cache/jars`` (Java artifacts) and ``run/`` (broker
data and logs, the Flink cluster's config copy, checkpoints). An installed copy
(the wheel) never writes to the current directory: it uses ``$ONCEFLOW_HOME``,
else ``~/.onceflow``, for ``run/``, and ``$ONCEFLOW_CACHE``, else
``$XDG_CACHE_HOME/onceflow`` (``~/.cache/onceflow``), for the jars. The Flink
configuration and the Java artifact manifests ship inside the package
(``onceflow/_data``: symlinks to ``flink-conf/`` and ``java/`` in a checkout).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "cache_dir",
    "checkout_root",
    "data_path",
    "flink_conf_file",
    "flink_home",
    "jars_dir",
    "project_root",
    "run_dir",
    "venv_python",
]

# onceflow/runtime/paths.py -> the onceflow package folder.
_PACKAGE = Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The source checkout this code runs from, or None for an installed copy."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "jobs").is_dir():
        return root
    return None


def project_root() -> Path:
    """Where onceflow keeps ``run/``: ``$ONCEFLOW_HOME``, the checkout, or ``~/.onceflow``."""
    env = os.environ.get("ONCEFLOW_HOME")
    if env:
        return Path(env).resolve()
    return checkout_root() or Path.home() / ".onceflow"


def cache_dir() -> Path:
    """Where downloaded artifacts go: ``<checkout>/.cache``, ``$ONCEFLOW_CACHE`` or the
    user's cache folder (``$XDG_CACHE_HOME/onceflow``, ``~/.cache/onceflow``)."""
    env = os.environ.get("ONCEFLOW_CACHE")
    if env:
        return Path(env).resolve()
    root = checkout_root()
    if root is not None:
        return root / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "onceflow"


def data_path(*parts: str) -> Path:
    """A file shipped with the package (``flink-conf/config.yaml``, ``java/<kind>/pom.xml``)."""
    return _PACKAGE.joinpath("_data", *parts)


def flink_conf_file() -> Path:
    """The Flink configuration every job and the local cluster start from."""
    return data_path("flink-conf", "config.yaml")


def jars_dir(kind: str) -> Path:
    """Folder of resolved jars: ``kind`` is ``kafka`` (broker, tools) or ``flink`` (connectors)."""
    return cache_dir() / "jars" / kind


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

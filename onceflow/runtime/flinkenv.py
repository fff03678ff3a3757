"""One PyFlink environment builder for local runs and cluster submissions.

``create_env(FlinkSettings(...))`` returns a StreamExecutionEnvironment configured
from ``flink-conf/config.yaml`` (the same file the standalone cluster uses) plus
per-job overrides, with the connector jars attached. The same job file therefore
runs as ``python -m onceflow.jobs.<name>`` (the mini-cluster starts inside this process)
and as ``flink run -py jobs/<name>.py`` (the cluster's config is the base and the
job-level keys here are stacked on top).

What it guarantees before a job starts:
- Python workers use this interpreter (the venv), never ``python`` from PATH;
- thread mode (PEMJA) can import itself: the venv's site-packages are on the
  ``PYTHONPATH`` the TaskManager JVM inherits;
- checkpoints go to a filesystem directory, never the JobManager heap;
- a bounded restart strategy, so a broken job fails instead of restarting forever.
"""

from __future__ import annotations

import logging
import os
import site
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from onceflow.errors import OnceflowError
from onceflow.runtime.paths import checkout_root, flink_conf_file, project_root, venv_python

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = [
    "FlinkSettings",
    "load_flink_conf",
    "job_configuration",
    "connector_jars",
    "create_env",
    "environment",
    "prepare_python_path",
    "reuse_objects",
]

log = logging.getLogger(__name__)

# Keys a job may set for itself; cluster-level keys (memory, ports) stay in the file.
JOB_LEVEL_PREFIXES = (
    "execution.",
    "state.",
    "restart-strategy",
    "python.",
    "parallelism.default",
    "pipeline.",
    "table.",
)


@dataclass(frozen=True)
class FlinkSettings:
    """Per-job overrides of ``flink-conf/config.yaml``; None keeps the file's value.

    :param parallelism: default operator parallelism.
    :param checkpoint_interval_ms: checkpoint interval; 0 disables checkpointing
        (refused by exactly-once sinks).
    :param execution_mode: ``thread`` (PEMJA, in the JVM) or ``process`` (Beam workers).
    :param state_backend: ``rocksdb`` or ``hashmap``.
    :param restart_attempts: restarts (exponential delay) before the job fails, unless
        it ran quietly between them (``flink-conf/config.yaml``).
    :param checkpoint_dir: override of ``execution.checkpointing.dir`` (a path or URI).
    :param extra: any further Flink keys, e.g. ``python.fn-execution.bundle.size``.
    """

    parallelism: int | None = None
    checkpoint_interval_ms: int | None = None
    execution_mode: str | None = None
    state_backend: str | None = None
    restart_attempts: int | None = None
    checkpoint_dir: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parallelism is not None and self.parallelism < 1:
            raise OnceflowError(f"parallelism must be >= 1, got {self.parallelism}")
        if self.checkpoint_interval_ms is not None and self.checkpoint_interval_ms < 0:
            raise OnceflowError("checkpoint interval must be >= 0 ms (0 = off)")
        if self.execution_mode not in (None, "thread", "process"):
            raise OnceflowError(
                f"execution mode {self.execution_mode!r} is not 'thread' or 'process'"
            )
        if self.restart_attempts is not None and self.restart_attempts < 0:
            raise OnceflowError(f"restart attempts must be >= 0, got {self.restart_attempts}")
        if self.state_backend not in (None, "rocksdb", "hashmap"):
            raise OnceflowError(f"state backend {self.state_backend!r} is not rocksdb/hashmap")

    def overrides(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.parallelism is not None:
            out["parallelism.default"] = str(self.parallelism)
        if self.checkpoint_interval_ms:
            out["execution.checkpointing.interval"] = f"{self.checkpoint_interval_ms}ms"
        if self.execution_mode is not None:
            out["python.execution-mode"] = self.execution_mode
        if self.state_backend is not None:
            out["state.backend.type"] = self.state_backend
        if self.restart_attempts == 0:
            out["restart-strategy.type"] = "none"  # exponential-delay needs >= 1 attempt
        elif self.restart_attempts is not None:
            out["restart-strategy.type"] = "exponential-delay"
            out["restart-strategy.exponential-delay.attempts-before-reset-backoff"] = str(
                self.restart_attempts
            )
        if self.checkpoint_dir is not None:
            d = self.checkpoint_dir
            out["execution.checkpointing.dir"] = d if "://" in d else Path(d).resolve().as_uri()
        out.update(self.extra)
        return out


def _flatten(prefix: str, node: Any, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(node, list):
        out[prefix] = ";".join(str(v) for v in node)
    elif isinstance(node, bool):
        out[prefix] = "true" if node else "false"
    elif node is not None:
        out[prefix] = str(node)


def expand_placeholders(text: str) -> str:
    """Replace ``${ONCEFLOW_HOME}`` and ``${ONCEFLOW_PYTHON}`` in a config text."""
    return text.replace("${ONCEFLOW_HOME}", str(project_root())).replace(
        "${ONCEFLOW_PYTHON}", venv_python()
    )


def load_flink_conf(path: Path | None = None) -> dict[str, str]:
    """``flink-conf/config.yaml`` as flat ``key: value`` strings, placeholders expanded."""
    conf_file = path or flink_conf_file()
    try:
        raw = yaml.safe_load(expand_placeholders(conf_file.read_text())) or {}
    except FileNotFoundError as exc:
        raise OnceflowError(f"{conf_file} is missing; it holds onceflow's Flink settings") from exc
    flat: dict[str, str] = {}
    _flatten("", raw, flat)
    return flat


def connector_jars() -> list[str]:
    """``file://`` URLs of the connector jars (Kafka, Parquet, Hadoop client), resolved
    with Maven on first use (:func:`onceflow.runtime.java.resolve_jars`)."""
    from onceflow.runtime.java import resolve_jars

    folder = resolve_jars("flink")
    jars = sorted(folder.glob("*.jar"))
    if not jars:
        raise OnceflowError(
            f"no connector jars in {folder}: run `onceflow jars --force` (KafkaSource/KafkaSink "
            "and the Parquet writer are not part of the PyFlink distribution)"
        )
    return [j.resolve().as_uri() for j in jars]


def job_configuration(settings: FlinkSettings | None = None) -> dict[str, str]:
    """The job-level Flink keys: the file's, then ``settings``' overrides, then jars."""
    settings = settings or FlinkSettings()
    conf = {k: v for k, v in load_flink_conf().items() if k.startswith(JOB_LEVEL_PREFIXES)}
    conf.update(settings.overrides())
    if settings.checkpoint_interval_ms == 0:
        # Flink 2.x refuses an interval of 0; checkpointing is off when the key is absent.
        conf.pop("execution.checkpointing.interval", None)
    jars = connector_jars()
    existing = [j for j in conf.get("pipeline.jars", "").split(";") if j]
    conf["pipeline.jars"] = ";".join(dict.fromkeys([*existing, *jars]))
    return conf


def prepare_python_path() -> None:
    """Put what Python workers import on PYTHONPATH for JVMs started from here.

    Thread mode imports ``pemja``, ``pyflink`` and the job's own functions inside
    the TaskManager JVM; that interpreter searches PYTHONPATH, not the venv, and
    fails with ``No module named 'pemja'`` otherwise. The folders holding
    ``pyflink``, ``pemja`` and ``onceflow`` (the checkout root, or the
    site-packages of an installed copy) go there, whichever way they were found.
    """
    import pemja
    import pyflink

    import onceflow

    homes = [Path(m.__file__ or "").resolve().parent.parent for m in (pyflink, pemja)]
    root = checkout_root()
    ours = [str(root)] if root else [str(Path(onceflow.__file__ or "").resolve().parent.parent)]
    wanted = [*site.getsitepackages(), *map(str, homes), *ours]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    merged = list(dict.fromkeys([*wanted, *current]))
    os.environ["PYTHONPATH"] = os.pathsep.join(merged)


def create_env(settings: FlinkSettings | None = None) -> StreamExecutionEnvironment:
    """A StreamExecutionEnvironment with onceflow's settings (see the module docstring).

    Must run before anything else starts the PyFlink gateway in this process, so
    the JVM inherits the prepared PYTHONPATH.
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    prepare_python_path()
    config = Configuration()
    for key, value in job_configuration(settings).items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    log.debug("flink env configured: %s", config.to_dict())
    arm_faults_from_environment()
    return env


def reuse_objects(env: StreamExecutionEnvironment) -> None:
    """Let chained operators hand records on without a copy each (``pipeline.object-reuse``).

    Measured: +14% on the versioned job's JVM path, whose chains are long (every
    conversion between a table and a stream is an operator, and without reuse each
    chained operator's input is a deep copy). Only for a job none of whose operators
    keeps a record it was handed after the call returns: onceflow's own jobs, whose
    Kafka and Parquet writers serialize at once, whose JDBC writers (onceflow's XA
    sink, the connector's at-least-once sink) copy what they buffer when reuse is
    on, whose Python operators convert each record as it crosses, and whose state is
    serialized or built anew. A user's job decides for its own functions.
    """
    env.get_config().enable_object_reuse()


def environment(
    *,
    parallelism: int | None = None,
    checkpoint_interval_ms: int | None = None,
    **settings: Any,
) -> StreamExecutionEnvironment:
    """An environment for a job using onceflow: ``create_env(FlinkSettings(...))``.

    :param parallelism: default operator parallelism (the file's when None).
    :param checkpoint_interval_ms: checkpoint interval (the file's when None);
        exactly-once sinks commit on checkpoints and refuse to run without.
    :param settings: further :class:`FlinkSettings` fields.
    """
    return create_env(
        FlinkSettings(
            parallelism=parallelism, checkpoint_interval_ms=checkpoint_interval_ms, **settings
        )
    )


FAULTS_VARIABLE = "ONCEFLOW_FAULTS"


def arm_faults_from_environment() -> None:
    """A test hook for any job, the examples too: ``$ONCEFLOW_FAULTS`` holds JSON
    ``{"<operator uid>": {"points": [...], "dir": "<marker folder>"}}``, and each
    operator fails once at each of its points (:func:`onceflow.operators.faults.arm_faults`)."""
    import json

    from onceflow.operators.faults import arm_faults

    text = os.environ.get(FAULTS_VARIABLE)
    if not text:
        return
    try:
        armed = json.loads(text)
        for uid, fault in armed.items():
            arm_faults(uid, fault["points"], fault["dir"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OnceflowError(
            f"${FAULTS_VARIABLE} must be JSON {{uid: {{points: [...], dir: ...}}}}: {exc}"
        ) from exc
    log.warning("fault injection armed from $%s: %s", FAULTS_VARIABLE, sorted(armed))

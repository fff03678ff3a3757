"""Settings every onceflow job shares, from CLI flags, environment and a YAML file.

Precedence: a CLI flag, then the YAML file given with ``--config``, then the
environment (``KAFKA_BOOTSTRAP``), then the default here. Job configs are frozen
dataclasses validated at construction; Kafka client properties whose names look
secret (password, jaas, secret, token) are redacted in ``repr`` and logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from onceflow.errors import OnceflowError
from onceflow.operators.records import DEAD_LETTER_MAX_BYTES, DEAD_LETTER_MIN_BYTES
from onceflow.runtime.flinkenv import FlinkSettings
from onceflow.runtime.kafka_source import KafkaSourceSpec
from onceflow.sinks.kafka import KafkaSinkSpec

__all__ = [
    "RuntimeConfig",
    "add_runtime_arguments",
    "merged_options",
    "build_config",
    "parse_properties",
    "redact",
    "require_flags",
]

SECRET_RE = re.compile(r"password|jaas|secret|token|credential", re.IGNORECASE)

C = TypeVar("C")


def redact(props: Mapping[str, str]) -> dict[str, str]:
    """A copy of Kafka properties with secret-looking values replaced by ``***``."""
    return {k: ("***" if SECRET_RE.search(k) else v) for k, v in props.items()}


def require_flags(*flags: tuple[str, object]) -> None:
    """Refuse a job config whose required settings are empty: ``("--input-topic", value)``."""
    missing = [flag for flag, value in flags if not value]
    if missing:
        raise OnceflowError(f"set {', '.join(missing)}")


def parse_properties(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, str]:
    """``["k=v", ...]`` (CLI) or a mapping (YAML) as a dict of strings."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OnceflowError(f"Kafka property {item!r} is not KEY=VALUE")
        out[key] = value
    return out


@dataclass(frozen=True)
class RuntimeConfig:
    """What every job needs: where Kafka is and how Flink runs it.

    :param bootstrap: Kafka bootstrap servers (``KAFKA_BOOTSTRAP`` or localhost:9092).
    :param group_id: the source's consumer group (committed offsets on checkpoint).
    :param transactional_id_prefix: base of the sinks' transactional ids; each
        exactly-once sink appends its own suffix. Unique per job, stable forever.
    :param guarantee: ``exactly-once`` or ``at-least-once`` (negative controls).
    :param checkpoint_interval_ms: 0 disables checkpointing (refused with exactly-once).
    :param restart_budget_ms: how long failover and restart may take; the
        transaction timeout must exceed checkpoint interval + this.
    :param bounded: stop once the input's latest offsets at start are consumed.
    :param kafka_properties: extra client properties for source and sinks
        (security settings for your own cluster).
    :param dead_letter_max_bytes: the largest dead letter written; a larger one
        keeps a prefix of its input, with the input's size and SHA-256. Checked at
        start against the DLQ topic's ``max.message.bytes``.
    """

    bootstrap: str = field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    )
    group_id: str = ""
    transactional_id_prefix: str = ""
    guarantee: str = "exactly-once"
    parallelism: int = 1
    checkpoint_interval_ms: int = 2000
    execution_mode: str = "thread"
    state_backend: str | None = None
    restart_attempts: int = 3
    restart_budget_ms: int = 300_000
    transaction_timeout_ms: int = 600_000
    checkpoint_dir: str | None = None
    bounded: bool = False
    kafka_properties: Mapping[str, str] = field(default_factory=dict)
    flink_options: Mapping[str, str] = field(default_factory=dict)
    dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise OnceflowError("no Kafka bootstrap servers: set --bootstrap or KAFKA_BOOTSTRAP")
        if self.guarantee not in ("exactly-once", "at-least-once"):
            raise OnceflowError(
                f"--guarantee {self.guarantee!r}: use exactly-once or at-least-once"
            )
        if self.restart_budget_ms < 0 or self.transaction_timeout_ms <= 0:
            raise OnceflowError("restart budget and transaction timeout must be positive")
        if self.dead_letter_max_bytes < DEAD_LETTER_MIN_BYTES:
            raise OnceflowError(
                f"--dead-letter-max-bytes must be at least {DEAD_LETTER_MIN_BYTES} "
                "(the reason and source position of a dead letter must fit)"
            )
        # FlinkSettings validates parallelism, interval, mode and backend.
        self.flink_settings()

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["kafka_properties"] = redact(self.kafka_properties)
        body = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({body})"

    def failure_marker_dir(self, armed: bool, configured: str | None, job: str) -> str | None:
        """Folder of injected-failure markers: None when nothing is armed, else the
        configured folder, else ``run/faults/<transactional id prefix or job>``."""
        from onceflow.runtime.paths import run_dir

        if not armed:
            return None
        return configured or str(run_dir("faults", self.transactional_id_prefix or job))

    def sink_spec(
        self, topic: str, suffix: str, max_value_bytes: int | None = None
    ) -> KafkaSinkSpec:
        """A sink with this job's guarantee; its transactional ids are ``<prefix>-<suffix>``.

        Each sink of a job needs its own prefix: two sinks sharing one would fence
        each other's producers.
        """
        prefix = (
            f"{self.transactional_id_prefix}-{suffix}" if self.transactional_id_prefix else None
        )
        return KafkaSinkSpec(
            bootstrap=self.bootstrap,
            topic=topic,
            guarantee=self.guarantee,
            transactional_id_prefix=prefix,
            transaction_timeout_ms=self.transaction_timeout_ms,
            properties=self.kafka_properties,
            max_value_bytes=max_value_bytes,
        )

    def source_spec(self, topic: str) -> KafkaSourceSpec:
        """The job's source; the group defaults to ``<prefix>-group``."""
        return KafkaSourceSpec(
            bootstrap=self.bootstrap,
            topic=topic,
            group_id=self.group_id or f"{self.transactional_id_prefix or 'onceflow'}-group",
            bounded=self.bounded,
            properties=self.kafka_properties,
        )

    def flink_settings(self) -> FlinkSettings:
        return FlinkSettings(
            parallelism=self.parallelism,
            checkpoint_interval_ms=self.checkpoint_interval_ms,
            execution_mode=self.execution_mode,
            state_backend=self.state_backend,
            restart_attempts=self.restart_attempts,
            checkpoint_dir=self.checkpoint_dir,
            extra=dict(self.flink_options),
        )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared flags; every default is None so YAML and defaults can fill in."""
    g = parser.add_argument_group("runtime")
    g.add_argument("--config", type=Path, help="YAML file with any of these settings")
    g.add_argument("--bootstrap", help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP)")
    g.add_argument("--group-id", help="consumer group of the source")
    g.add_argument("--transactional-id-prefix", help="stable, unique per job")
    g.add_argument("--guarantee", choices=["exactly-once", "at-least-once"])
    g.add_argument("--parallelism", type=int)
    g.add_argument("--checkpoint-interval-ms", type=int)
    g.add_argument("--execution-mode", choices=["thread", "process"])
    g.add_argument("--state-backend", choices=["rocksdb", "hashmap"])
    g.add_argument("--restart-attempts", type=int)
    g.add_argument("--restart-budget-ms", type=int)
    g.add_argument("--transaction-timeout-ms", type=int)
    g.add_argument("--checkpoint-dir", help="checkpoint directory (path or URI)")
    g.add_argument(
        "--dead-letter-max-bytes",
        type=int,
        help="largest dead letter; larger ones keep a prefix of the input (default 1000000)",
    )
    g.add_argument(
        "--bounded",
        action="store_true",
        default=None,
        help="stop after consuming what the input holds at start",
    )
    g.add_argument(
        "--kafka-property",
        dest="kafka_properties",
        action="append",
        metavar="KEY=VALUE",
        help="extra Kafka client property (repeatable)",
    )
    g.add_argument(
        "--flink-option",
        dest="flink_options",
        action="append",
        metavar="KEY=VALUE",
        help="extra Flink configuration key (repeatable)",
    )


def merged_options(args: argparse.Namespace) -> dict[str, Any]:
    """CLI values over the YAML file's, with dashes in YAML keys read as underscores."""
    merged: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except FileNotFoundError as exc:
            raise OnceflowError(f"config file {config_file} does not exist") from exc
        if not isinstance(loaded, dict):
            raise OnceflowError(f"config file {config_file} must hold a mapping of settings")
        merged.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    for key, value in vars(args).items():
        if key != "config" and value is not None:
            merged[key] = value
    for key in ("kafka_properties", "flink_options"):
        if key in merged:
            merged[key] = parse_properties(merged[key])
    return merged


def build_config(cls: type[C], options: Mapping[str, Any]) -> C:
    """Construct dataclass ``cls`` from the options it knows; unknown YAML keys are an error."""
    assert dataclasses.is_dataclass(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names - {"handler", "command", "verbose"})
    if unknown:
        raise OnceflowError(f"unknown settings: {', '.join(unknown)}")
    return cls(**{k: v for k, v in options.items() if k in names})

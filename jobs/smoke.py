"""Smoke pipeline: Kafka -> Python pass-through -> Kafka, exactly-once.

The smallest job that exercises the whole stack: ``KafkaSource`` with offsets in
checkpoints and ``read_committed``, one Python operator (thread mode by default),
and the transactional ``KafkaSink``. Its output read with read_committed equals
its input, once each, across restarts.

Run: ``python -m onceflow.jobs.smoke --input-topic in --output-topic out
--transactional-id-prefix smoke-1 --group-id smoke-1 --bounded``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onceflow.runtime.jobconfig import (
    RuntimeConfig,
    add_runtime_arguments,
    build_config,
    merged_options,
    require_flags,
)
from onceflow.runtime.jobrun import run_job
from onceflow.runtime.kafka_source import read_kafka_json
from onceflow.sinks.kafka import KafkaSinkSpec, validate_sinks, write_kafka
from onceflow.streams import kafka_record_type

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = ["SmokeConfig", "build_pipeline", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class SmokeConfig(RuntimeConfig):
    """:param input_topic: read from. :param output_topic: written to, exactly-once."""

    input_topic: str = ""
    output_topic: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_flags(("--input-topic", self.input_topic), ("--output-topic", self.output_topic))

    def sink_specs(self) -> dict[str, KafkaSinkSpec]:
        return {"out": self.sink_spec(self.output_topic, "out")}


def _pass_through(row: Any) -> Any:
    from pyflink.common import Row

    return Row(None, row[0])


def build_pipeline(env: StreamExecutionEnvironment, cfg: SmokeConfig) -> None:
    """Source -> pass-through -> exactly-once sink, attached to ``env``."""
    records = read_kafka_json(env, cfg.source_spec(cfg.input_topic))
    passed = records.map(_pass_through, output_type=kafka_record_type())
    passed = passed.name("pass-through").uid("pass-through")
    spec = cfg.sink_specs()["out"]
    # check=False: main() checked the sink against the broker before the JVM started.
    write_kafka(passed, spec, uid="out-sink", restart_budget_ms=cfg.restart_budget_ms, check=False)


def parse_config(argv: Sequence[str] | None) -> SmokeConfig:
    parser = argparse.ArgumentParser(
        prog="onceflow.jobs.smoke", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--input-topic")
    parser.add_argument("--output-topic")
    add_runtime_arguments(parser)
    return build_config(SmokeConfig, merged_options(parser.parse_args(argv)))


def check(cfg: SmokeConfig) -> None:
    """Refuse unsafe sink settings before the job starts."""
    validate_sinks(
        cfg.sink_specs(),
        checkpoint_interval_ms=cfg.checkpoint_interval_ms,
        restart_budget_ms=cfg.restart_budget_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(argv, parse_config, check, build_pipeline, lambda cfg: "onceflow-smoke")


if __name__ == "__main__":
    sys.exit(main())

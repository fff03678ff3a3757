"""onceflow's dedup job (``onceflow.jobs.dedup``) on both paths, under several settings.

``flink-py-*``: the Python path (``--dedup-path python``, one keyed Python call per
record; ``flink-py-avro``: the same workload in Avro, ``--format avro``;
``flink-py-fingerprint``: identified by a hash of the content, ``--fingerprint``);
``flink-jvm`` / ``flink-jvm-alo``: the JVM path (the job's default: Flink's own
deduplication keyed by onceflow's Java scanner), exactly-once / at-least-once;
``flink-jvm-fingerprint`` / ``-alo``: the same deduplication keyed by a fingerprint
from one Python call per record.

A baseline -- exactly-once, thread mode, parallelism 1, RocksDB -- and one factor
changed at a time: the delivery guarantee, the execution mode, the parallelism,
the state backend. One extra process-mode row adds the bundle/cache settings the
field notes found faster (``python.fn-execution.bundle.size``,
``python.state.cache-size``), so whether they matter is measured, not assumed.

Each run is ``python -m onceflow.jobs.dedup --bounded`` on its own mini-cluster (the same
command a user runs), with checkpoints every 2 s into a run-local directory,
no restarts (a failure is reported, not retried), and its own output topic,
DLQ topic, consumer group and transactional id prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from onceflow.bench.common import (
    BenchContext,
    ContenderResult,
    flink_tasks_running,
    run_contender,
)
from onceflow.testing.harness import JobProcess

__all__ = ["BASELINE", "CONTENDERS", "Variant", "dedup_job_args"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_MS = 2_000


@dataclass(frozen=True)
class Variant:
    """Settings of one run of the dedup job."""

    guarantee: str = "exactly-once"
    execution_mode: str = "thread"
    parallelism: int = 1
    state_backend: str = "rocksdb"
    flink_options: dict[str, str] = field(default_factory=dict)
    dedup_path: str = "python"
    #: ``avro``: the same workload Confluent-framed in an input topic of its own (the
    #: registry: ``$ONCEFLOW_REGISTRY_URL`` or the local stack's), ``--format avro``.
    value_format: str = "json"
    #: Identify records by a fingerprint of their content (``--fingerprint``), not by id.
    fingerprint: bool = False

    def describe(self) -> str:
        text = (
            f"{self.dedup_path}/{'fingerprint/' if self.fingerprint else ''}"
            f"{'' if self.value_format == 'json' else 'avro/'}"
            f"{'EOS' if self.guarantee == 'exactly-once' else 'ALO'}/{self.execution_mode}/"
            f"p{self.parallelism}/{self.state_backend}"
        )
        if self.flink_options:
            text += " + " + ", ".join(f"{k}={v}" for k, v in self.flink_options.items())
        return text


BASELINE = Variant()

VARIANTS: dict[str, Variant] = {
    "flink-py-baseline": BASELINE,
    "flink-py-alo": Variant(guarantee="at-least-once"),
    "flink-jvm": Variant(dedup_path="jvm"),
    "flink-jvm-alo": Variant(dedup_path="jvm", guarantee="at-least-once"),
    "flink-py-avro": Variant(value_format="avro"),
    "flink-py-fingerprint": Variant(fingerprint=True),
    "flink-jvm-fingerprint": Variant(dedup_path="jvm", fingerprint=True),
    "flink-jvm-fingerprint-alo": Variant(
        dedup_path="jvm", fingerprint=True, guarantee="at-least-once"
    ),
    "flink-py-hashmap": Variant(state_backend="hashmap"),
    "flink-py-p2": Variant(parallelism=2),
    "flink-py-process": Variant(execution_mode="process"),
    "flink-py-process-bundle": Variant(
        execution_mode="process",
        flink_options={
            "python.fn-execution.bundle.size": "100000",
            "python.state.cache-size": "1000000",
        },
    ),
}


def dedup_job_args(
    ctx: BenchContext,
    name: str,
    variant: Variant,
    topics: dict[str, str],
    *,
    bounded: bool = True,
    checkpoint_interval_ms: int = CHECKPOINT_INTERVAL_MS,
    restart_attempts: int = 0,
) -> list[str]:
    """Command-line flags of ``onceflow.jobs.dedup`` for one contender."""
    args = [
        "--bootstrap",
        ctx.bootstrap,
        "--input-topic",
        topics["in"],
        "--output-topic",
        topics["out"],
        "--dlq-topic",
        topics["dlq"],
        "--transactional-id-prefix",
        ctx.name(name),
        "--group-id",
        ctx.name(f"{name}-group"),
        "--guarantee",
        variant.guarantee,
        "--execution-mode",
        variant.execution_mode,
        "--parallelism",
        str(variant.parallelism),
        "--state-backend",
        variant.state_backend,
        "--checkpoint-interval-ms",
        str(checkpoint_interval_ms),
        "--restart-attempts",
        str(restart_attempts),
        "--checkpoint-dir",
        str(ctx.checkpoints(name)),
        "--dedup-path",
        variant.dedup_path,
    ]
    if bounded:
        args.append("--bounded")
    if variant.fingerprint:
        args.append("--fingerprint")
    for key, value in variant.flink_options.items():
        args += ["--flink-option", f"{key}={value}"]
    return args


def run_variant(ctx: BenchContext, name: str, variant: Variant) -> ContenderResult:
    topics = {
        "in": ctx.input_topic,
        "out": ctx.create_topic(name),
        "dlq": ctx.create_topic(f"{name}-dlq", 1),
    }
    result = ContenderResult(name, "flink", variant.describe())
    args = dedup_job_args(ctx, name, variant, topics)
    if variant.value_format == "avro":
        topics["in"], registry_url = _avro_input(ctx, name)
        args[args.index("--input-topic") + 1] = topics["in"]
        args += ["--format", "avro", "--registry-url", registry_url]
        result.extra["input_topic"] = topics["in"]
    job = JobProcess("onceflow.jobs.dedup", args, ctx.file(name, ".log"))
    run_contender(
        ctx,
        result,
        job,
        topics["out"],
        ctx.name(f"{name}-group"),
        start=job.start,
        tasks_running=flink_tasks_running(job),
        input_topic=topics["in"],
        # At-least-once writes each record once too when nothing fails: still exact here.
        exact_expected=True,
    )
    result.extra["log"] = str(job.log_file)
    return result


def _avro_input(ctx: BenchContext, name: str) -> tuple[str, str]:
    """The shared workload (same spec: same ids, order and duplicates) in Avro in a topic
    of its own, produced before the contender starts; the topic and the registry URL."""
    from onceflow.local.registry import registry_url_or_local
    from onceflow.testing.produce import produce

    registry_url = registry_url_or_local()
    topic = ctx.create_topic(f"{name}-in", output=False)
    produce(
        ctx.bootstrap, topic, ctx.spec(), None, progress=False,
        value_format="avro", registry_url=registry_url,
    )  # fmt: skip
    return topic, registry_url


def _runner(name: str, variant: Variant) -> Callable[[BenchContext], ContenderResult]:
    return lambda ctx: run_variant(ctx, name, variant)


#: name -> runner, in run order.
CONTENDERS: dict[str, Callable[[BenchContext], ContenderResult]] = {
    name: _runner(name, variant) for name, variant in VARIANTS.items()
}

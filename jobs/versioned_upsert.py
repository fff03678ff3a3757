"""Versioned upsert job: Kafka change events -> per-key version order -> compacted topic + Parquet.

Input records are JSON change events
``{"key", "version", "op": "upsert"|"delete", "payload": {...}[, "expected_version"]}``.

Pipeline (every stateful operator and sink has a stable uid):

1. ``KafkaSource`` (read_committed, offsets in checkpoints, committed on checkpoint);
2. keyed by entity key in the JVM (``JSON_VALUE`` of the key field in the
   source query), so one Python operator runs per record;
3. ``versioned-update``: parse and validate (malformed records: bad JSON,
   missing key/version, non-integer version, unknown op, ... become dead letters
   with the reason and source topic/partition/offset), then
   :class:`VersionedUpdateCore` decides applied / stale / conflict / repeat
   (``--mode newer_wins`` or ``compare_and_set``, optional ``--ttl-ms``);
4. outputs, all committed on the same checkpoints:

   - ``--applied-topic``: one record per applied change, key = entity key,
     value = payload JSON, or a tombstone (null value) for a delete. Meant to be
     a *compacted* topic (``cleanup.policy=compact``): it converges to the
     latest version of every live entity, and tombstones remove deleted ones.
     ``--create-topics`` creates it compacted; an existing topic without
     compaction is reported at start. Until the log cleaner runs, readers see
     every applied change and must take the last record per key.
   - ``--changes-path``: the Parquet log of applied changes (key, version, op,
     payload JSON, expected/replaced version, source position, processing
     time), written by Flink's ``FileSink``: part files appear under their
     final names only when a checkpoint completes (exactly-once regardless of
     ``--guarantee``, which applies to the Kafka outputs).
   - ``--stale-topic`` / ``--conflict-topic``: the event, the stored version
     and the reason, keyed by entity key; repeats are dropped (counted);
   - ``--dlq-topic``: dead letters, keyed by source position.

The job never fails on bad input. Run locally (mini-cluster)::

    python -m onceflow.jobs.versioned_upsert --input-topic changes --applied-topic entities \\
        --stale-topic stale --conflict-topic conflicts --dlq-topic dlq \\
        --changes-path run/changes --transactional-id-prefix versioned-prod-1 --create-topics

or on a cluster with ``flink run -py jobs/versioned_upsert.py`` and the same flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onceflow.errors import OnceflowError
from onceflow.operators.faults import arm_faults
from onceflow.operators.versioned.core import MODES, NEWER_WINS
from onceflow.operators.versioned.output import CHANGE_COLUMNS
from onceflow.operators.versioned.stream import versioned_update
from onceflow.runtime.jobconfig import (
    RuntimeConfig,
    add_runtime_arguments,
    build_config,
    merged_options,
    require_flags,
)
from onceflow.runtime.jobrun import run_job
from onceflow.runtime.kafka_source import read_kafka_json
from onceflow.runtime.pgoutput import (
    PostgresOutput,
    add_postgres_arguments,
    check_postgres_output,
    pop_postgres_output,
    write_query_to_postgres,
)
from onceflow.sinks.files import FileSinkSpec, RecordSchema, validate_file_sink, write_files
from onceflow.sinks.kafka import KafkaSinkSpec, validate_sinks, write_kafka
from onceflow.sinks.postgres import PgColumn, PostgresSinkSpec
from onceflow.streams import table_env

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = [
    "ENTITY_COLUMNS",
    "VersionedUpsertConfig",
    "build_pipeline",
    "parse_config",
    "main",
    "prepare_topics",
]

log = logging.getLogger(__name__)

CHANGES_SINK_UID = "changes-files"

#: ``--pg-table``: one row per entity key with its newest applied version; a delete
#: leaves a tombstone row (``deleted``, no payload) so a late upsert cannot revive it.
ENTITY_COLUMNS = (
    PgColumn("key", "STRING", False),
    PgColumn("version", "BIGINT", False),
    PgColumn("deleted", "BOOLEAN", False),
    PgColumn("payload", "STRING"),
)
# The applied changes (the Parquet log's rows) as entity rows.
ENTITY_QUERY = (
    "SELECT `key`, `version`, `op` = 'delete', "
    "CASE WHEN `op` = 'delete' THEN CAST(NULL AS STRING) ELSE `payload_json` END "
    "FROM {routed}"
)


@dataclass(frozen=True, repr=False)
class VersionedUpsertConfig(RuntimeConfig):
    """The versioned upsert job's settings (plus the shared :class:`RuntimeConfig`).

    :param input_topic: JSON change events.
    :param applied_topic: latest value per entity (compacted; tombstones for deletes).
    :param stale_topic: events older than the stored version.
    :param conflict_topic: same version with other content, or a failed compare-and-set.
    :param dlq_topic: dead letters (malformed input) with the reason.
    :param changes_path: directory or URI of the Parquet log of applied changes.
    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param ttl_ms: processing-time TTL of a key's state; 0 = keep forever. A TTL
        shorter than the input's out-of-orderness lets late updates resurrect
        deleted entities or roll back newer versions.
    :param max_record_bytes: larger records go to the DLQ as ``oversize``.
    :param changes_bucketing: ``datetime`` (hourly folders, UTC), ``none``, or
        ``field`` (a ``<field>=<value>`` folder per value of ``changes_bucket_field``).
    :param changes_bucket_format: DateTimeFormatter pattern of the folders.
    :param changes_bucket_field: the column of ``field`` buckets (e.g. ``op``, ``topic``).
    :param changes_part_prefix: name prefix of committed Parquet files.
    :param changes_compression: Parquet codec (SNAPPY, ZSTD, GZIP, LZ4_RAW, UNCOMPRESSED).
    :param create_topics: create missing output topics (the applied one compacted).
    :param fail_on_changes: ``KEY@VERSION`` of changes that each inject one
        failure when they arrive (tests, verifier).
    :param fail_marker_dir: folder of ``<key>@<version>.fired`` markers recording
        that the failure fired (default under run/faults).
    :param job_name: Flink job name (default ``onceflow-versioned-upsert``).
    :param postgres: optional versioned table of entities (``--pg-url``,
        ``--pg-table``): one row per key at its newest version, written with
        ``guarantee`` through the never-step-back upsert of :mod:`onceflow.sinks.postgres`.
    """

    input_topic: str = ""
    applied_topic: str = ""
    stale_topic: str = ""
    conflict_topic: str = ""
    dlq_topic: str = ""
    changes_path: str = ""
    mode: str = NEWER_WINS
    ttl_ms: int = 0
    # Dead letters carry the original as base64 (x1.33): 512 KiB stays under
    # Kafka's default 1 MB max.message.bytes of the DLQ topic.
    max_record_bytes: int = 512 * 1024
    changes_bucketing: str = "datetime"
    changes_bucket_format: str = "yyyy-MM-dd--HH"
    changes_bucket_field: str | None = None
    changes_part_prefix: str = "changes"
    changes_compression: str = "SNAPPY"
    create_topics: bool = False
    fail_on_changes: tuple[str, ...] = ()
    fail_marker_dir: str | None = None
    job_name: str | None = None
    postgres: PostgresOutput | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_flags(
            ("--input-topic", self.input_topic),
            ("--applied-topic", self.applied_topic),
            ("--stale-topic", self.stale_topic),
            ("--conflict-topic", self.conflict_topic),
            ("--dlq-topic", self.dlq_topic),
            ("--changes-path", self.changes_path),
        )
        outputs = [self.applied_topic, self.stale_topic, self.conflict_topic, self.dlq_topic]
        if self.input_topic in outputs:
            raise OnceflowError(
                f"--input-topic {self.input_topic!r} is also an output topic: the job would "
                "read its own output; use separate topics"
            )
        if self.applied_topic in outputs[1:]:
            raise OnceflowError(
                f"--applied-topic {self.applied_topic!r} is also the stale, conflict or DLQ "
                "topic: its latest value per key would mix reports with entity values"
            )
        if self.mode not in MODES:
            raise OnceflowError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.ttl_ms < 0:
            raise OnceflowError("--ttl-ms must be >= 0 (0 = keep every key's version forever)")
        if self.max_record_bytes <= 0:
            raise OnceflowError("--max-record-bytes must be positive")
        for change in self.fail_on_changes:
            key, at, version = change.rpartition("@")
            if not (key and at and version.isdigit()):
                raise OnceflowError(
                    f"--fail-on-change {change!r}: write KEY@VERSION, e.g. e-00042@7"
                )
        self.changes_spec()  # raises OnceflowError on a bad path, bucketing or codec

    def failure_markers(self) -> str | None:
        return self.failure_marker_dir(
            bool(self.fail_on_changes), self.fail_marker_dir, "versioned"
        )

    def sink_specs(self) -> dict[str, KafkaSinkSpec]:
        """Route -> Kafka sink; each has its own transactional id prefix."""
        return {
            "applied": self.sink_spec(self.applied_topic, "applied"),
            "stale": self.sink_spec(self.stale_topic, "stale"),
            "conflict": self.sink_spec(self.conflict_topic, "conflict"),
            "dlq": self.sink_spec(self.dlq_topic, "dlq", self.dead_letter_max_bytes),
        }

    def entities_spec(self) -> PostgresSinkSpec | None:
        if self.postgres is None:
            return None
        return self.postgres.spec(
            columns=ENTITY_COLUMNS,
            mode="versioned",
            key=("key",),
            guarantee=self.guarantee,
            uid="entities-sink",
        )

    def changes_spec(self) -> FileSinkSpec:
        return FileSinkSpec(
            base_path=self.changes_path,
            format="parquet",
            schema=RecordSchema.of(*CHANGE_COLUMNS),
            bucketing=self.changes_bucketing,
            bucket_format=self.changes_bucket_format,
            bucket_field=self.changes_bucket_field,
            part_prefix=self.changes_part_prefix,
            compression=self.changes_compression,
        )


def build_pipeline(env: StreamExecutionEnvironment, cfg: VersionedUpsertConfig) -> None:
    """The recipe: change events from Kafka -> versioned update -> one output per outcome."""
    if cfg.fail_on_changes:  # a test hook: fail once when each KEY@VERSION arrives
        arm_faults("versioned-update", cfg.fail_on_changes, cfg.failure_markers() or "")
    events = read_kafka_json(env, cfg.source_spec(cfg.input_topic))
    updated = versioned_update(
        events,
        mode=cfg.mode,
        ttl_ms=cfg.ttl_ms or None,
        max_record_bytes=cfg.max_record_bytes,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
        uid="versioned-update",
    )
    outputs = {
        "applied": updated.applied,
        "stale": updated.stale,
        "conflict": updated.conflicts,
        "dlq": updated.dead_letters,
    }
    for route, spec in cfg.sink_specs().items():
        # check=False: main() checked the sinks against the broker before the JVM started.
        write_kafka(
            outputs[route], spec, uid=f"{route}-sink",
            restart_budget_ms=cfg.restart_budget_ms, check=False,
        )  # fmt: skip
    write_files(updated.changes, cfg.changes_spec(), uid=CHANGES_SINK_UID)
    entities = cfg.entities_spec()
    if entities is not None:
        write_query_to_postgres(
            env,
            table_env(env),
            updated.changes,
            ENTITY_QUERY,
            entities,
            checkpoint_interval_ms=cfg.checkpoint_interval_ms,
        )


def prepare_topics(cfg: VersionedUpsertConfig) -> None:
    """Create missing outputs (``--create-topics``) and check the applied topic is compacted."""
    from onceflow.runtime.topics import cleanup_policy, ensure_topics, partition_count

    if cfg.create_topics:
        # Same partition count as the input keeps each entity's records in one partition.
        partitions = partition_count(cfg.bootstrap, cfg.input_topic) or 1
        ensure_topics(
            cfg.bootstrap,
            {
                # Compaction keeps the latest value per key; tombstones remove deleted keys.
                cfg.applied_topic: {"cleanup.policy": "compact"},
                cfg.stale_topic: {},
                cfg.conflict_topic: {},
                cfg.dlq_topic: {},
            },
            partitions,
        )
    policy = cleanup_policy(cfg.bootstrap, cfg.applied_topic)
    if policy is not None and "compact" not in policy:
        log.warning(
            "applied topic %s has cleanup.policy=%s: retention will delete entities' only "
            "record and readers rebuilding the table will lose them; set cleanup.policy=compact",
            cfg.applied_topic,
            policy,
        )


def parse_config(argv: Sequence[str] | None = None) -> VersionedUpsertConfig:
    parser = argparse.ArgumentParser(
        prog="onceflow.jobs.versioned_upsert", description=__doc__.splitlines()[0]
    )
    g = parser.add_argument_group("versioned upsert")
    g.add_argument("--input-topic")
    g.add_argument("--applied-topic", help="compacted topic: latest value per entity key")
    g.add_argument("--stale-topic")
    g.add_argument("--conflict-topic")
    g.add_argument("--dlq-topic")
    g.add_argument("--changes-path", help="directory/URI of the Parquet log of applied changes")
    g.add_argument("--mode", choices=list(MODES))
    g.add_argument("--ttl-ms", type=int, help="state TTL per key (0 = forever, the default)")
    g.add_argument("--max-record-bytes", type=int, help="larger records go to the DLQ")
    g.add_argument("--changes-bucketing", choices=["datetime", "none", "field"])
    g.add_argument("--changes-bucket-format", help="DateTimeFormatter pattern of bucket folders")
    g.add_argument(
        "--changes-bucket-field", help="column of --changes-bucketing field (op, topic, ...)"
    )
    g.add_argument("--changes-part-prefix")
    g.add_argument("--changes-compression")
    g.add_argument(
        "--create-topics",
        action="store_true",
        default=None,
        help="create missing output topics (the applied topic with cleanup.policy=compact)",
    )
    g.add_argument(
        "--fail-on-change",
        dest="fail_on_changes",
        action="append",
        metavar="KEY@VERSION",
        help="inject one failure when this change arrives (repeatable; tests, verifier)",
    )
    g.add_argument("--fail-marker-dir", help="folder recording injected failures that fired")
    g.add_argument("--job-name", help="Flink job name (onceflow-versioned-upsert)")
    add_runtime_arguments(parser)
    add_postgres_arguments(parser, "entities at their newest version")
    options = merged_options(parser.parse_args(argv))
    options["postgres"] = pop_postgres_output(options)
    if "fail_on_changes" in options:
        options["fail_on_changes"] = tuple(options["fail_on_changes"])
    return build_config(VersionedUpsertConfig, options)


def check(cfg: VersionedUpsertConfig) -> None:
    """Refuse unsafe settings before anything starts; create outputs if asked."""
    validate_sinks(
        cfg.sink_specs(),
        checkpoint_interval_ms=cfg.checkpoint_interval_ms,
        restart_budget_ms=cfg.restart_budget_ms,
    )
    validate_file_sink(cfg.changes_spec(), checkpoint_interval_ms=cfg.checkpoint_interval_ms)
    check_postgres_output(
        cfg.entities_spec(),
        parallelism=cfg.parallelism,
        checkpoint_interval_ms=cfg.checkpoint_interval_ms,
    )
    # The outputs exist (with --create-topics) and the applied topic compacts.
    prepare_topics(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    # build_pipeline re-checks the environment's checkpointing (attach_file_sink).
    return run_job(
        argv,
        parse_config,
        check,
        build_pipeline,
        lambda cfg: cfg.job_name or "onceflow-versioned-upsert",
    )


if __name__ == "__main__":
    sys.exit(main())

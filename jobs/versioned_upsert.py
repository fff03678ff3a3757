"""Versioned upsert job: Kafka change events -> per-key version order -> compacted topic + Parquet.

Input records are JSON change events
``{"key", "version", "op": "upsert"|"delete", "payload": {...}[, "expected_version"]}``.

Pipeline (every stateful operator and sink has a stable uid):

1. ``KafkaSource`` (read_committed, offsets in checkpoints, committed on checkpoint);
2. ``versioned-update`` (``--versioned-path``, default ``auto``): the JVM path:
   one Python call per record parses and validates it (malformed records: bad
   JSON, missing key/version, non-integer version, unknown op, ... become dead
   letters with the reason and source topic/partition/offset) and encodes what
   the decision needs; a Java process table function keyed by entity key holds
   the version state and decides applied / stale / conflict / repeat
   (``--mode newer_wins`` or ``compare_and_set``, optional ``--ttl-ms``) exactly
   as :class:`VersionedUpdateCore` does, and writes the reports.
   ``--versioned-path python``: keyed by entity key in the JVM (``JSON_VALUE`` of
   the key field), one keyed Python operator parses and runs the core. Both
   paths write the same records; their state is not interchangeable (a
   savepoint of one path does not restore into the other);
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

With ``--format avro --registry-url URL [--reader-schema FILE] [--subject-strategy S]``
the input is Confluent-framed Avro change events, one flat record each (see
:data:`AVRO_CHANGE_FIELDS`): ``key`` (string), ``version`` (long or int), optionally ``op``
(string ``upsert``/``delete``; absent or null: an upsert) and ``expected_version``
(nullable long, for ``compare_and_set``), and the entity's own fields beside them: the
whole record is the payload (Avro has no free-form object; nested records are not read
yet). Each value is decoded once in Python into a Row of the reader schema or a dead
letter with its Avro reason; a reader schema without ``key`` and ``version`` is refused
at start. The applied topic gets the change records as Avro (the reader schema,
registered under the applied topic's subject after the compatibility check), deletes as
tombstones; the stale, conflict and DLQ reports stay JSON documents (onceflow's own
report of the event, the stored version and the reason, whatever the user's schema, so
the existing checkers read them); the Parquet log is unchanged.

The job never fails on bad input. Run locally (mini-cluster)::

    python -m onceflow.jobs.versioned_upsert --input-topic changes --applied-topic entities \\
        --stale-topic stale --conflict-topic conflicts --dlq-topic dlq \\
        --changes-path run/changes --transactional-id-prefix versioned-prod-1 --create-topics

or on a cluster with ``flink run -py jobs/versioned_upsert.py`` and the same flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onceflow.avro.subjects import SUBJECT_STRATEGIES, TOPIC
from onceflow.errors import OnceflowError
from onceflow.operators.faults import arm_faults
from onceflow.operators.paths import PATHS
from onceflow.operators.versioned.core import MODES, NEWER_WINS
from onceflow.operators.versioned.output import CHANGE_COLUMNS
from onceflow.operators.versioned.stream import versioned_update
from onceflow.runtime.flinkenv import reuse_objects
from onceflow.runtime.jobconfig import (
    RuntimeConfig,
    add_runtime_arguments,
    build_config,
    merged_options,
    require_flags,
)
from onceflow.runtime.jobrun import run_job
from onceflow.runtime.kafka_avro import (
    encode_avro,
    load_reader_schema,
    read_kafka_avro,
    register_value_schema,
)
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
    "AVRO_CHANGE_FIELDS",
    "ENTITY_COLUMNS",
    "check_change_schema",
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


#: An Avro change event's fields and the Avro types each may have (a nullable union of
#: one of them too); ``key`` and ``version`` are required, the others optional.
AVRO_CHANGE_FIELDS = {
    "key": ("string",),
    "version": ("long", "int"),
    "op": ("string",),
    "expected_version": ("long", "int"),
}


def check_change_schema(schema: dict[str, Any]) -> None:
    """Refuse an Avro reader schema that cannot carry change events.

    :raises OnceflowError: ``key`` or ``version`` missing, or a change field of another
        type, with what to change.
    """
    fields = {str(f.get("name")): f.get("type") for f in schema.get("fields") or []}
    missing = [name for name in ("key", "version") if name not in fields]
    if missing:
        raise OnceflowError(
            f"the Avro reader schema {schema.get('name')!r} has no field {missing[0]!r}: a "
            "change event needs key (string) and version (long), with op (string) and "
            "expected_version (long) optional; add them or point --reader-schema at the "
            "change events' schema"
        )
    for name, allowed in AVRO_CHANGE_FIELDS.items():
        kind = fields.get(name)
        if name not in fields:
            continue
        branches = [b for b in kind if b != "null"] if isinstance(kind, list) else [kind]
        if len(branches) != 1 or branches[0] not in allowed:
            raise OnceflowError(
                f"the Avro reader schema's field {name!r} is {kind!r}: a change event's "
                f"{name} must be {' or '.join(allowed)} (or a union of null and one)"
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
    :param value_format: ``json`` (default) or ``avro`` (input and applied topic).
    :param registry_url: the schema registry's Confluent-compatible API (Avro).
    :param reader_schema: the Avro reader schema's text (None: the latest schema of the
        input's subject).
    :param subject_strategy: ``topic`` (default), ``record`` or ``topic-record``.
    :param versioned_path: ``auto`` (the JVM path for JSON), ``jvm`` or ``python``
        (see :func:`onceflow.operators.versioned.stream.versioned_update`).
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
    value_format: str = "json"
    registry_url: str | None = None
    reader_schema: str | None = None
    subject_strategy: str = TOPIC
    versioned_path: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_format()
        if self.versioned_path not in PATHS:
            raise OnceflowError(f"--versioned-path must be one of {', '.join(PATHS)}")
        if self.versioned_path == "jvm" and self.value_format == "avro":
            raise OnceflowError(
                "--versioned-path jvm needs JSON change events; --format avro runs on the "
                "Python path"
            )
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

    def __repr__(self) -> str:
        text = super().__repr__()
        if self.registry_url:  # a registry URL may carry credentials
            text = text.replace(repr(self.registry_url), "'<registry url>'")
        return text

    def _check_format(self) -> None:
        if self.value_format not in ("json", "avro"):
            raise OnceflowError(f"--format must be json or avro, not {self.value_format!r}")
        if self.subject_strategy not in SUBJECT_STRATEGIES:
            raise OnceflowError(
                f"--subject-strategy must be one of {list(SUBJECT_STRATEGIES)}, "
                f"not {self.subject_strategy!r}"
            )
        if self.value_format == "json":
            if self.registry_url or self.reader_schema or self.subject_strategy != TOPIC:
                raise OnceflowError(
                    "--registry-url, --reader-schema and --subject-strategy need --format avro"
                )
            return
        if not self.registry_url:
            raise OnceflowError(
                "--format avro needs --registry-url (the registry's Confluent-compatible "
                "API, e.g. http://127.0.0.1:8085/apis/ccompat/v7)"
            )
        if self.postgres is not None:
            raise OnceflowError("--format avro does not write the PostgreSQL table yet")
        if self.reader_schema is not None:
            try:
                schema = json.loads(self.reader_schema)
            except ValueError as exc:
                raise OnceflowError(f"--reader-schema is not JSON: {exc}") from exc
            check_change_schema(schema)

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
    reuse_objects(env)  # no operator of this job keeps a record it was handed
    if cfg.fail_on_changes:  # a test hook: fail once when each KEY@VERSION arrives
        arm_faults("versioned-update", cfg.fail_on_changes, cfg.failure_markers() or "")
    if cfg.value_format == "avro":
        _build_avro_pipeline(env, cfg)
        return
    events = read_kafka_json(env, cfg.source_spec(cfg.input_topic))
    updated = versioned_update(
        events,
        mode=cfg.mode,
        ttl_ms=cfg.ttl_ms or None,
        max_record_bytes=cfg.max_record_bytes,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
        uid="versioned-update",
        path=cfg.versioned_path,
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


def _build_avro_pipeline(env: StreamExecutionEnvironment, cfg: VersionedUpsertConfig) -> None:
    """Avro change events -> versioned update of their Rows -> Avro applied, JSON reports."""
    registry_url = cfg.registry_url or ""
    strategy = cfg.subject_strategy
    schema = load_reader_schema(registry_url, cfg.input_topic, cfg.reader_schema, strategy)
    check_change_schema(schema)
    # Refused before anything runs when the applied subject's rule forbids the schema.
    schema_id = register_value_schema(registry_url, cfg.applied_topic, schema, strategy)
    source = read_kafka_avro(
        env,
        cfg.source_spec(cfg.input_topic),
        registry_url,
        schema,
        max_record_bytes=cfg.max_record_bytes,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
    )
    names = {str(f["name"]) for f in schema["fields"]}
    updated = versioned_update(
        source.records,
        op_field="op" if "op" in names else None,
        expected_version_field="expected_version" if "expected_version" in names else None,
        mode=cfg.mode,
        ttl_ms=cfg.ttl_ms or None,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
        uid="versioned-update",
    )
    applied = encode_avro(
        updated.applied,
        schema,
        schema_id,
        key_field="key",
        delete_op_field="op" if "op" in names else None,
        uid="applied-avro",
    )
    outputs = {
        "applied": applied,
        "stale": updated.stale,
        "conflict": updated.conflicts,
        "dlq": source.dead_letters.union(updated.dead_letters),
    }
    for route, spec in cfg.sink_specs().items():
        write_kafka(
            outputs[route], spec, uid=f"{route}-sink",
            restart_budget_ms=cfg.restart_budget_ms, check=False,
        )  # fmt: skip
    write_files(updated.changes, cfg.changes_spec(), uid=CHANGES_SINK_UID)


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
    g.add_argument(
        "--versioned-path", choices=PATHS,
        help="auto (default: parse in Python once, decide in the JVM), jvm or python",
    )  # fmt: skip
    g.add_argument("--fail-marker-dir", help="folder recording injected failures that fired")
    g.add_argument("--job-name", help="Flink job name (onceflow-versioned-upsert)")
    g.add_argument(
        "--format", dest="value_format", choices=("json", "avro"),
        help="change events and applied values: json (default) or Confluent-framed avro",
    )  # fmt: skip
    g.add_argument("--registry-url", help="schema registry (Confluent-compatible API), for avro")
    g.add_argument(
        "--reader-schema",
        help="Avro reader schema file of the change events (default: latest of the subject)",
    )
    g.add_argument(
        "--subject-strategy", choices=SUBJECT_STRATEGIES,
        help="registry subjects (avro): topic = <topic>-value (default), "
        "record = <namespace>.<name>, topic-record = <topic>-<namespace>.<name>",
    )  # fmt: skip
    add_runtime_arguments(parser)
    add_postgres_arguments(parser, "entities at their newest version")
    options = merged_options(parser.parse_args(argv))
    options["postgres"] = pop_postgres_output(options)
    if "fail_on_changes" in options:
        options["fail_on_changes"] = tuple(options["fail_on_changes"])
    if options.get("reader_schema"):
        path = Path(options["reader_schema"])
        try:
            options["reader_schema"] = path.read_text()
        except OSError as exc:
            raise OnceflowError(f"--reader-schema {path}: cannot read it ({exc})") from exc
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

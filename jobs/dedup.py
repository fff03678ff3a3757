"""Dedup job: Kafka -> dedup by id or fingerprint -> Kafka, exactly-once, with a DLQ.

Pipeline (every stateful operator and sink has a stable uid):

1. ``KafkaSource`` (read_committed, offsets in checkpoints, committed on checkpoint);
2. ``dedup`` (``--dedup-path``, default ``auto``): the JVM path: Flink's own
   deduplication passes the first occurrence within the TTL horizon. By id,
   onceflow's Java scanner keys each record and only records it refused cross into
   Python, which writes their dead letters (reason, source topic/partition/offset);
   with ``--fingerprint``, one Python call per record computes the identity (or
   NULL: a dead letter). ``--dedup-path python``: one keyed Python call per record
   parses the JSON, checks the identity and keeps the state. Both paths write the
   same records and the same dead letters; their state is not interchangeable (a
   savepoint of one path does not restore into the other);
4. two transactional ``KafkaSink``s (output keyed by id, DLQ keyed by source
   position), both committed on the same checkpoints.

With ``--format avro --registry-url URL [--reader-schema FILE]`` the input is
Confluent-framed Avro: each value is decoded once in Python
(:func:`onceflow.runtime.kafka_avro.read_kafka_avro`: a typed Row of the reader schema,
or a dead letter with the Avro reason and source position), the Rows are keyed in the
JVM by the ``--id-field`` column, and first occurrences are written as Avro with the
reader schema registered under ``<output-topic>-value`` (``--subject-strategy record``:
``<namespace>.<name>``; ``topic-record``: ``<output-topic>-<namespace>.<name>``) once the
registry's compatibility check accepted it: an incompatible schema is refused at start.

The job never fails on bad input. Run locally (mini-cluster)::

    python -m onceflow.jobs.dedup --input-topic in --output-topic out --dlq-topic dlq \\
        --transactional-id-prefix dedup-prod-1

or on a cluster with ``flink run -py jobs/dedup.py`` and the same flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from onceflow.avro.subjects import SUBJECT_STRATEGIES, TOPIC
from onceflow.errors import OnceflowError
from onceflow.operators.dedup.identity import IdentitySpec
from onceflow.operators.dedup.stream import dedup
from onceflow.operators.faults import arm_faults
from onceflow.operators.paths import PATHS
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
from onceflow.sinks.kafka import KafkaSinkSpec, validate_sinks, write_kafka
from onceflow.sinks.postgres import PgColumn, PostgresSinkSpec
from onceflow.streams import table_env

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = ["DedupConfig", "LEDGER_COLUMNS", "build_pipeline", "parse_config", "main"]

log = logging.getLogger(__name__)

#: ``--pg-table``: one row per first occurrence (id text, the record's JSON text).
LEDGER_COLUMNS = (PgColumn("id", "STRING", False), PgColumn("record", "STRING", False))


@dataclass(frozen=True, repr=False)
class DedupConfig(RuntimeConfig):
    """The dedup job's settings (plus the shared :class:`RuntimeConfig`).

    :param input_topic: JSON records to deduplicate.
    :param output_topic: first occurrences, keyed by id.
    :param dlq_topic: dead letters (malformed input) with the reason.
    :param id_field: dotted path of the id (ignored with ``fingerprint``).
    :param fingerprint: identify by a hash of the content instead of an id.
    :param fingerprint_fields: the fields hashed (empty: the whole record).
    :param ttl_ms: dedup horizon in processing-time ms; 0 = remember forever.
    :param max_record_bytes: larger records go to the DLQ as ``oversize``.
    :param fail_on_ids: inject one failure when each of these ids arrives (tests,
        verifier).
    :param fail_marker_dir: folder of ``<id>.fired`` markers (default under run/faults).
    :param job_name: the Flink job name.
    :param postgres: optional append table of first occurrences (``--pg-url``,
        ``--pg-table``), written with ``guarantee``.
    :param dedup_path: ``auto`` (the JVM path when the identity allows), ``jvm``
        or ``python`` (see :func:`onceflow.operators.dedup.stream.dedup`).
    :param value_format: ``json`` (default) or ``avro`` (Confluent framing, in and out).
    :param registry_url: the schema registry's Confluent-compatible API (Avro).
    :param reader_schema: the Avro reader schema's text (None: the latest schema of
        the input topic's subject).
    :param subject_strategy: ``topic`` (default), ``record`` or ``topic-record``: the
        subjects of the output's schema and of the input's reader-schema lookup.
    """

    input_topic: str = ""
    output_topic: str = ""
    dlq_topic: str = ""
    id_field: str = "id"
    fingerprint: bool = False
    fingerprint_fields: tuple[str, ...] = field(default_factory=tuple)
    ttl_ms: int = 24 * 3600 * 1000
    # Dead letters carry the original as base64 (x1.33): 512 KiB stays under
    # Kafka's default 1 MB max.message.bytes of the DLQ topic.
    max_record_bytes: int = 512 * 1024
    fail_on_ids: tuple[str, ...] = field(default_factory=tuple)
    fail_marker_dir: str | None = None
    job_name: str = "onceflow-dedup"
    postgres: PostgresOutput | None = None
    value_format: str = "json"
    dedup_path: str = "auto"
    registry_url: str | None = None
    reader_schema: str | None = None
    subject_strategy: str = TOPIC

    def __post_init__(self) -> None:
        super().__post_init__()
        require_flags(
            ("--input-topic", self.input_topic),
            ("--output-topic", self.output_topic),
            ("--dlq-topic", self.dlq_topic),
        )
        self._check_format()
        if self.ttl_ms < 0:
            raise OnceflowError("--ttl-ms must be >= 0 (0 = remember every id forever)")
        if self.max_record_bytes <= 0:
            raise OnceflowError("--max-record-bytes must be positive")
        if self.dedup_path not in PATHS:
            raise OnceflowError(f"--dedup-path must be one of {', '.join(PATHS)}")
        if self.dedup_path == "jvm" and self.value_format == "avro":
            raise OnceflowError(
                "--dedup-path jvm needs JSON records; --format avro runs on the Python path"
            )
        try:
            self.identity()
        except ValueError as exc:
            raise OnceflowError(str(exc)) from exc

    def __repr__(self) -> str:
        text = super().__repr__()
        if self.registry_url:  # a registry URL may carry credentials
            text = text.replace(repr(self.registry_url), repr(_redacted(self.registry_url)))
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
        if self.fingerprint:
            raise OnceflowError("--format avro dedups by --id-field; --fingerprint is JSON only")
        if self.postgres is not None:
            raise OnceflowError("--format avro does not write the PostgreSQL ledger yet")
        if "." in self.id_field:
            raise OnceflowError(
                f"--id-field {self.id_field!r}: with --format avro the id is a top-level "
                "field of the reader schema"
            )

    def identity(self) -> IdentitySpec:
        if self.fingerprint:
            return IdentitySpec.by_fingerprint(tuple(self.fingerprint_fields) or None)
        return IdentitySpec.by_id(self.id_field)

    def failure_markers(self) -> str | None:
        return self.failure_marker_dir(bool(self.fail_on_ids), self.fail_marker_dir, "dedup")

    def sink_specs(self) -> dict[str, KafkaSinkSpec]:
        return {
            # Passed records are the input's bytes, at most max_record_bytes.
            "out": self.sink_spec(self.output_topic, "out", self.max_record_bytes),
            "dlq": self.sink_spec(self.dlq_topic, "dlq", self.dead_letter_max_bytes),
        }

    def ledger_spec(self) -> PostgresSinkSpec | None:
        if self.postgres is None:
            return None
        return self.postgres.spec(
            columns=LEDGER_COLUMNS, mode="append", guarantee=self.guarantee, uid="ledger-sink"
        )


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def build_pipeline(env: StreamExecutionEnvironment, cfg: DedupConfig) -> None:
    """The recipe: JSON records from Kafka -> dedup -> first occurrences and dead letters."""
    reuse_objects(env)  # no operator of this job keeps a record it was handed
    if cfg.fail_on_ids:  # a test hook: fail once when each of these ids arrives
        arm_faults("dedup", cfg.fail_on_ids, cfg.failure_markers() or "")
    if cfg.value_format == "avro":
        _build_avro_pipeline(env, cfg)
        return
    records = read_kafka_json(env, cfg.source_spec(cfg.input_topic))
    deduped = dedup(
        records,
        id_field=cfg.id_field,
        fingerprint=(cfg.fingerprint_fields or True) if cfg.fingerprint else False,
        ttl_ms=cfg.ttl_ms or None,
        max_record_bytes=cfg.max_record_bytes,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
        uid="dedup",
        path=cfg.dedup_path,
    )
    outputs = {"out": deduped.passed, "dlq": deduped.dead_letters}
    for route, spec in cfg.sink_specs().items():
        # check=False: main() checked the sinks against the broker before the JVM started.
        write_kafka(
            outputs[route], spec, uid=f"{route}-sink",
            restart_budget_ms=cfg.restart_budget_ms, check=False,
        )  # fmt: skip
    ledger = cfg.ledger_spec()
    if ledger is not None:
        write_query_to_postgres(
            env,
            table_env(env),
            deduped.passed,
            "SELECT `key`, CAST(`v` AS STRING) FROM {routed}",
            ledger,
            checkpoint_interval_ms=cfg.checkpoint_interval_ms,
        )


def _build_avro_pipeline(env: StreamExecutionEnvironment, cfg: DedupConfig) -> None:
    """Avro records -> dedup by the id column -> Avro first occurrences and dead letters."""
    registry_url = cfg.registry_url or ""
    strategy = cfg.subject_strategy
    schema = load_reader_schema(registry_url, cfg.input_topic, cfg.reader_schema, strategy)
    # Refused before anything runs when the registry says the output subject's
    # compatibility rule forbids the schema.
    schema_id = register_value_schema(registry_url, cfg.output_topic, schema, strategy)
    source = read_kafka_avro(
        env,
        cfg.source_spec(cfg.input_topic),
        registry_url,
        schema,
        max_record_bytes=cfg.max_record_bytes,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
    )
    deduped = dedup(
        source.records,
        id_field=cfg.id_field,
        ttl_ms=cfg.ttl_ms or None,
        dead_letter_max_bytes=cfg.dead_letter_max_bytes,
        uid="dedup",
    )
    # The output's writer schema is the reader schema, registered before the job runs.
    outputs = {
        "out": encode_avro(deduped.passed, schema, schema_id, key_field=cfg.id_field),
        "dlq": source.dead_letters.union(deduped.dead_letters),
    }
    for route, spec in cfg.sink_specs().items():
        write_kafka(
            outputs[route], spec, uid=f"{route}-sink",
            restart_budget_ms=cfg.restart_budget_ms, check=False,
        )  # fmt: skip


def parse_config(argv: Sequence[str] | None = None) -> DedupConfig:
    parser = argparse.ArgumentParser(
        prog="onceflow.jobs.dedup", description=__doc__.splitlines()[0]
    )
    g = parser.add_argument_group("dedup")
    g.add_argument("--input-topic")
    g.add_argument("--output-topic")
    g.add_argument("--dlq-topic")
    g.add_argument("--id-field", help="dotted path of the id (default: id)")
    g.add_argument("--fingerprint", action="store_true", default=None, help="dedup by content")
    g.add_argument(
        "--fingerprint-field",
        dest="fingerprint_fields",
        action="append",
        help="field hashed for the fingerprint (repeatable; default: whole record)",
    )
    g.add_argument("--ttl-ms", type=int, help="dedup horizon (0 = forever; default 24 h)")
    g.add_argument("--max-record-bytes", type=int, help="larger records go to the DLQ")
    g.add_argument(
        "--fail-on-id",
        dest="fail_on_ids",
        action="append",
        help="inject one failure when this id arrives (repeatable; tests, verifier)",
    )
    g.add_argument("--fail-marker-dir", help="folder recording injected failures that fired")
    g.add_argument("--job-name", help="Flink job name (onceflow-dedup)")
    g.add_argument(
        "--format", dest="value_format", choices=("json", "avro"),
        help="input and output values: json (default) or Confluent-framed avro",
    )  # fmt: skip
    g.add_argument(
        "--dedup-path", choices=PATHS,
        help="auto (default: Flink's own operators, JSON by id or fingerprint), jvm or python",
    )  # fmt: skip
    g.add_argument("--registry-url", help="schema registry (Confluent-compatible API), for avro")
    g.add_argument(
        "--reader-schema",
        help="Avro reader schema file (default: latest schema of the input's subject)",
    )
    g.add_argument(
        "--subject-strategy", choices=SUBJECT_STRATEGIES,
        help="registry subjects (avro): topic = <topic>-value (default), "
        "record = <namespace>.<name>, topic-record = <topic>-<namespace>.<name>",
    )  # fmt: skip
    add_runtime_arguments(parser)
    add_postgres_arguments(parser, "first occurrences")
    options = merged_options(parser.parse_args(argv))
    options["postgres"] = pop_postgres_output(options)
    for key in ("fingerprint_fields", "fail_on_ids"):
        if key in options:
            options[key] = tuple(options[key])
    if options.get("reader_schema"):
        path = Path(options["reader_schema"])
        try:
            options["reader_schema"] = path.read_text()
        except OSError as exc:
            raise OnceflowError(f"--reader-schema {path}: cannot read it ({exc})") from exc
    return build_config(DedupConfig, options)


def check(cfg: DedupConfig) -> None:
    """Refuse unsafe sink settings before the job starts."""
    validate_sinks(
        cfg.sink_specs(),
        checkpoint_interval_ms=cfg.checkpoint_interval_ms,
        restart_budget_ms=cfg.restart_budget_ms,
    )
    check_postgres_output(
        cfg.ledger_spec(),
        parallelism=cfg.parallelism,
        checkpoint_interval_ms=cfg.checkpoint_interval_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(argv, parse_config, check, build_pipeline, lambda cfg: cfg.job_name)


if __name__ == "__main__":
    sys.exit(main())

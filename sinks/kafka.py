"""Validated factory over Flink's transactional ``KafkaSink``.

PyFlink cannot implement a two-phase-commit sink in Python; the 2PC machinery
(KafkaWriter -> KafkaCommittable -> KafkaCommitter) is Java's ``KafkaSink``. This
module builds it through the Kafka table connector (``sink.delivery-guarantee``),
which is the same ``KafkaSink`` with a per-column key/value mapping that the
DataStream wrapper lacks: the key comes from one ``BYTES`` column, the value from
another, and a NULL value is written as a tombstone.

Delivery guarantee:
- ``exactly-once``: every record is written inside a Kafka transaction that
  commits only when the checkpoint covering it completes; after a failure the
  open transactions are aborted and the job replays from the checkpoint, so a
  ``read_committed`` reader sees every record once.
- ``at-least-once``: flushes on checkpoint, no transactions: a replay after a
  failure duplicates what was written since the last checkpoint. For
  comparisons and the negative control of tests.

Refused at start (``validate``), with what to change: EXACTLY_ONCE without
checkpointing; a missing transactional id prefix; ``transaction.timeout.ms`` not
above checkpoint interval + restart budget (the broker would abort a transaction
the job still means to commit), or above the broker's ``transaction.max.timeout.ms``
(the broker refuses every transaction); a sink whose largest record
(``max_value_bytes``) exceeds the topic's ``max.message.bytes`` or the producer's
``max.request.size`` (the first such record would fail the sink, the job would
restart and fail on it again).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from pyflink.datastream import DataStream
    from pyflink.table import Schema, Table, TableDescriptor

__all__ = [
    "GUARANTEES",
    "KafkaSinkSpec",
    "broker_transaction_max_timeout_ms",
    "check_sink",
    "kafka_sink_descriptor",
    "topic_max_message_bytes",
    "validate_record_size",
    "validate_sink",
    "validate_sinks",
    "write_kafka",
]

log = logging.getLogger(__name__)

GUARANTEES = ("exactly-once", "at-least-once", "none")
# Kafka's defaults: the producer's max.request.size and a topic's max.message.bytes.
DEFAULT_MAX_REQUEST_SIZE = 1_048_576
# Room for a record's key, headers and its batch's framing above the value.
RECORD_OVERHEAD_BYTES = 1024
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class KafkaSinkSpec:
    """One Kafka output of a job.

    :param bootstrap: bootstrap servers of the target cluster.
    :param topic: the output topic.
    :param guarantee: ``exactly-once`` (default), ``at-least-once`` or ``none``.
    :param transactional_id_prefix: required for exactly-once; unique per job and
        stable forever (a changed or shared prefix leaves lingering or fenced
        transactions that stall read_committed readers).
    :param transaction_timeout_ms: the producer's ``transaction.timeout.ms``.
    :param properties: further producer properties (``properties.*`` of the connector).
    :param max_value_bytes: the largest value the job writes to this sink, when
        known; checked at start against the topic's and the producer's limits.
    """

    bootstrap: str
    topic: str
    guarantee: str = "exactly-once"
    transactional_id_prefix: str | None = None
    transaction_timeout_ms: int = 600_000
    properties: Mapping[str, str] = field(default_factory=dict)
    max_value_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.guarantee not in GUARANTEES:
            raise OnceflowError(
                f"delivery guarantee {self.guarantee!r} is not one of {', '.join(GUARANTEES)}"
            )
        if not TOPIC_RE.match(self.topic):
            raise OnceflowError(f"{self.topic!r} is not a valid Kafka topic name")
        if self.guarantee == "exactly-once" and not self.transactional_id_prefix:
            raise OnceflowError(
                f"the exactly-once sink to {self.topic!r} needs a transactional id prefix "
                "(unique per job, stable across restarts and redeploys); set "
                "--transactional-id-prefix"
            )
        if self.transactional_id_prefix and not PREFIX_RE.match(self.transactional_id_prefix):
            raise OnceflowError(
                f"transactional id prefix {self.transactional_id_prefix!r} may only use "
                "letters, digits, '.', '_' and '-'"
            )


def _read_config(
    bootstrap: str, kind: str, name: str | None, key: str, timeout_s: float
) -> int | None:
    """An integer config of the broker (``name`` None: the first broker) or a topic."""
    try:
        from kafka import KafkaAdminClient
        from kafka.admin import ConfigResource, ConfigResourceType

        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            if name is None:
                name = str(admin.describe_cluster()["brokers"][0]["broker_id"])
            resource = ConfigResource(getattr(ConfigResourceType, kind.upper()), name, [key])
            found = admin.describe_configs([resource], config_filter="all")
            entry = found.get(kind, {}).get(name, {}).get(key)
            if entry is not None:
                return int(entry["value"])
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - unreachable broker: validation skips the check
        log.warning("could not read %s of %s %s from %s: %s", key, kind, name, bootstrap, exc)
    return None


@functools.lru_cache(maxsize=16)
def broker_transaction_max_timeout_ms(bootstrap: str, timeout_s: float = 10.0) -> int | None:
    """Read ``transaction.max.timeout.ms`` from a broker (once per process); None when it
    cannot be read."""
    return _read_config(bootstrap, "broker", None, "transaction.max.timeout.ms", timeout_s)


def topic_max_message_bytes(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int | None:
    """Read a topic's ``max.message.bytes``; None when the topic does not exist (yet)
    or cannot be read."""
    return _read_config(bootstrap, "topic", topic, "max.message.bytes", timeout_s)


def validate_record_size(spec: KafkaSinkSpec, topic_max_bytes: int | None) -> None:
    """Refuse a sink whose largest record would not fit the topic or the producer.

    :param topic_max_bytes: the topic's ``max.message.bytes``, or None when unknown.
    :raises OnceflowError: with what to change.
    """
    if spec.max_value_bytes is None:
        return
    needed = spec.max_value_bytes + RECORD_OVERHEAD_BYTES
    request = int(spec.properties.get("max.request.size", DEFAULT_MAX_REQUEST_SIZE))
    for limit, what in (
        (topic_max_bytes, f"topic {spec.topic!r} accepts (max.message.bytes)"),
        (request, "the producer sends (max.request.size)"),
    ):
        if limit is not None and limit < needed:
            raise OnceflowError(
                f"records to {spec.topic!r} may be up to {spec.max_value_bytes} bytes plus "
                f"{RECORD_OVERHEAD_BYTES} of key and framing, but {what} at most {limit}: the "
                "first such record would fail the sink on every restart; raise that limit "
                "or lower the job's record size limit (--max-record-bytes, "
                "--dead-letter-max-bytes)"
            )


def validate_sink(
    spec: KafkaSinkSpec,
    *,
    checkpoint_interval_ms: int,
    restart_budget_ms: int,
    broker_max_timeout_ms: int | None,
) -> None:
    """Refuse configurations under which the sink cannot keep its guarantee.

    :param checkpoint_interval_ms: the job's checkpoint interval (0 = off).
    :param restart_budget_ms: the longest the job may spend failing over and
        restarting before it commits again.
    :param broker_max_timeout_ms: the broker's limit, or None when unknown.
    :raises OnceflowError: with what to change.
    """
    if spec.guarantee != "exactly-once":
        return
    if checkpoint_interval_ms <= 0:
        raise OnceflowError(
            f"the sink to {spec.topic!r} is EXACTLY_ONCE but checkpointing is off: its "
            "transactions commit only when a checkpoint completes, so nothing would ever "
            "become visible; set a checkpoint interval (e.g. --checkpoint-interval-ms 2000)"
        )
    needed = checkpoint_interval_ms + restart_budget_ms
    if spec.transaction_timeout_ms <= needed:
        raise OnceflowError(
            f"transaction.timeout.ms ({spec.transaction_timeout_ms}) is not above the "
            f"checkpoint interval + restart budget ({checkpoint_interval_ms} + "
            f"{restart_budget_ms} = {needed}): the broker could abort a transaction the job "
            "still means to commit after a restart; raise --transaction-timeout-ms"
        )
    if broker_max_timeout_ms is not None and spec.transaction_timeout_ms > broker_max_timeout_ms:
        raise OnceflowError(
            f"transaction.timeout.ms ({spec.transaction_timeout_ms}) exceeds the broker's "
            f"transaction.max.timeout.ms ({broker_max_timeout_ms}): the broker would refuse "
            "every transaction; lower --transaction-timeout-ms or raise the broker limit"
        )


def kafka_sink_descriptor(
    spec: KafkaSinkSpec,
    *,
    keyed: bool = True,
    json_schema: Schema | None = None,
    key_field: str | None = None,
) -> TableDescriptor:
    """A Kafka table sink over ``KafkaSink``.

    Raw records: columns ``k BYTES`` (key, when ``keyed``) and ``v BYTES``. With
    ``json_schema``: the schema's columns as a JSON object (Flink's ``json``
    format), the record key the ``key_field`` column (``raw``) when given.
    """
    from pyflink.table import DataTypes, TableDescriptor
    from pyflink.table import Schema as TableSchema

    if json_schema is None:
        raw = TableSchema.new_builder()
        if keyed:
            raw.column("k", DataTypes.BYTES())
        raw.column("v", DataTypes.BYTES())
        schema = raw.build()
    else:
        schema, keyed = json_schema, False
    builder = (
        TableDescriptor.for_connector("kafka")
        .schema(schema)
        .option("topic", spec.topic)
        .option("properties.bootstrap.servers", spec.bootstrap)
        .option("value.format", "raw" if json_schema is None else "json")
        .option("sink.delivery-guarantee", spec.guarantee)
        # Waits for every in-sync replica: a write acknowledged then lost would be a gap.
        .option("properties.acks", "all")
    )
    if keyed:
        builder = (
            builder.option("key.format", "raw")
            .option("key.fields", "k")
            .option("value.fields-include", "EXCEPT_KEY")
        )
    elif key_field is not None:
        builder = builder.option("key.format", "raw").option("key.fields", key_field)
    if spec.guarantee == "exactly-once":
        assert spec.transactional_id_prefix is not None  # checked in __post_init__
        builder = builder.option("sink.transactional-id-prefix", spec.transactional_id_prefix)
        # Must outlive checkpoint interval + restart, and stay under the broker's maximum.
        builder = builder.option(
            "properties.transaction.timeout.ms", str(spec.transaction_timeout_ms)
        )
    for key, value in spec.properties.items():
        builder = builder.option(f"properties.{key}", value)
    return builder.build()


def check_sink(spec: KafkaSinkSpec, *, checkpoint_interval_ms: int, restart_budget_ms: int) -> None:
    """Every refusal of a Kafka sink: the record size against the topic's and the
    producer's limits, then the transaction settings against the job's and the
    broker's (both read from the broker).

    :raises OnceflowError: with what to change.
    """
    if spec.max_value_bytes is not None:
        validate_record_size(spec, topic_max_message_bytes(spec.bootstrap, spec.topic))
    if spec.guarantee == "exactly-once":
        validate_sink(
            spec,
            checkpoint_interval_ms=checkpoint_interval_ms,
            restart_budget_ms=restart_budget_ms,
            broker_max_timeout_ms=broker_transaction_max_timeout_ms(spec.bootstrap),
        )


def validate_sinks(
    specs: Mapping[str, KafkaSinkSpec], *, checkpoint_interval_ms: int, restart_budget_ms: int
) -> None:
    """:func:`check_sink` for each of a job's sinks, before the job starts."""
    for spec in specs.values():
        check_sink(
            spec, checkpoint_interval_ms=checkpoint_interval_ms, restart_budget_ms=restart_budget_ms
        )


def write_kafka(
    stream: DataStream,
    spec: KafkaSinkSpec,
    *,
    uid: str,
    key_field: str | None = None,
    restart_budget_ms: int = 300_000,
    check: bool = True,
) -> None:
    """Write ``stream`` to Kafka through Flink's ``KafkaSink`` with ``spec``'s guarantee.

    Refuses at once what could not keep the guarantee (:func:`check_sink`, with
    the checkpoint interval of the stream's environment), and names the sink's
    operators after ``uid`` whatever the environment sets: the writer (its
    state: the transactions to commit after a restore) and the committer keep
    their uids across deployments.

    :param stream: a Row stream. With a ``v`` field (Kafka records, JSON
        records): ``v`` is the value (bytes or text) and a ``key`` field, when
        there is one, the key. Any other Rows are written as JSON objects of
        their fields (Flink's ``json`` format), keyed by ``key_field`` if given.
    :param uid: stable and unique in the job (e.g. ``orders-out``).
    :param key_field: JSON output: the field whose value is the record key.
    :param restart_budget_ms: how long a failover may take; the transaction
        timeout must exceed the checkpoint interval plus this.
    :param check: False when the caller ran :func:`check_sink` already (a job
        does before its JVM starts); the checkpoint interval is checked anyway.
    :raises OnceflowError: with what to change.
    """
    from pyflink.table import DataTypes
    from pyflink.table.expressions import col

    from onceflow.streams import checkpoint_interval_ms, field_names, stable_uids, table_env

    env = stream.get_execution_environment()
    interval = checkpoint_interval_ms(env)
    if check:
        check_sink(spec, checkpoint_interval_ms=interval, restart_budget_ms=restart_budget_ms)
    else:
        validate_sink(
            spec,
            checkpoint_interval_ms=interval,
            restart_budget_ms=restart_budget_ms,
            broker_max_timeout_ms=None,
        )
    names = field_names(stream)
    if names is None:
        raise OnceflowError(
            f"the Kafka sink {uid!r} needs a Row stream (a 'v' field, or fields to write as "
            f"JSON), got {stream.get_type()}"
        )
    tenv = table_env(env)
    with stable_uids(tenv, uid):
        table = tenv.from_data_stream(stream)
        if "v" in names:
            keyed = "key" in names
            value = col("v").cast(DataTypes.BYTES()).alias("v")
            key = col("key").cast(DataTypes.BYTES()).alias("k")
            selected = table.select(key, value) if keyed else table.select(value)
            descriptor = kafka_sink_descriptor(spec, keyed=keyed)
        else:
            selected, descriptor = table, _json_descriptor(spec, table, names, key_field)
        statements = tenv.create_statement_set()
        sink_table = uid.replace("-", "_").replace(".", "_")
        tenv.create_temporary_table(sink_table, descriptor)
        statements.add_insert(sink_table, selected)
        statements.attach_as_datastream()
    log.info("Kafka sink %s: %s, %s", uid, spec.topic, spec.guarantee)


def _json_descriptor(
    spec: KafkaSinkSpec, table: Table, names: tuple[str, ...], key_field: str | None
) -> TableDescriptor:
    """A Kafka table sink writing rows as JSON objects (the key: one field, raw)."""
    from pyflink.table import Schema as TableSchema

    if key_field is not None and key_field not in names:
        raise OnceflowError(f"key_field {key_field!r} is not a field of {list(names)}")
    schema = TableSchema.new_builder().from_row_data_type(table.get_schema().to_row_data_type())
    return kafka_sink_descriptor(spec, json_schema=schema.build(), key_field=key_field)

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
(the broker refuses every transaction).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from pyflink.table import TableDescriptor

__all__ = [
    "GUARANTEES",
    "KafkaSinkSpec",
    "broker_transaction_max_timeout_ms",
    "kafka_sink_descriptor",
    "validate_sink",
]

log = logging.getLogger(__name__)

GUARANTEES = ("exactly-once", "at-least-once", "none")
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
    """

    bootstrap: str
    topic: str
    guarantee: str = "exactly-once"
    transactional_id_prefix: str | None = None
    transaction_timeout_ms: int = 600_000
    properties: Mapping[str, str] = field(default_factory=dict)

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


def broker_transaction_max_timeout_ms(bootstrap: str, timeout_s: float = 10.0) -> int | None:
    """Read ``transaction.max.timeout.ms`` from a broker; None when it cannot be read."""
    try:
        from kafka import KafkaAdminClient
        from kafka.admin import ConfigResource, ConfigResourceType

        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            broker_id = str(admin.describe_cluster()["brokers"][0]["broker_id"])
            resource = ConfigResource(
                ConfigResourceType.BROKER, broker_id, configs=["transaction.max.timeout.ms"]
            )
            found = admin.describe_configs([resource], config_filter="all")
            entry = found.get("broker", {}).get(broker_id, {}).get("transaction.max.timeout.ms")
            if entry is not None:
                return int(entry["value"])
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - unreachable broker: validation skips the check
        log.warning("could not read transaction.max.timeout.ms from %s: %s", bootstrap, exc)
    return None


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


def kafka_sink_descriptor(spec: KafkaSinkSpec, *, keyed: bool = True) -> TableDescriptor:
    """A Kafka table sink over ``KafkaSink``: columns ``k BYTES`` (key) and ``v BYTES``.

    :param keyed: write column ``k`` as the record key (else only ``v``, no key).
    """
    from pyflink.table import DataTypes, Schema, TableDescriptor

    schema = Schema.new_builder()
    if keyed:
        schema.column("k", DataTypes.BYTES())
    schema.column("v", DataTypes.BYTES())
    builder = (
        TableDescriptor.for_connector("kafka")
        .schema(schema.build())
        .option("topic", spec.topic)
        .option("properties.bootstrap.servers", spec.bootstrap)
        .option("value.format", "raw")
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

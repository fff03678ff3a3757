"""The Kafka source every onceflow job reads with: offsets live in Flink checkpoints.

Built through the Kafka table connector, which is Flink's ``KafkaSource``, because
it exposes each record's metadata (topic, partition, offset) that the DataStream
wrapper of PyFlink does not, and the dead-letter records must carry it.

Guarantees:
- Offsets are part of every checkpoint; after a failure the job resumes from the
  offsets of the last completed checkpoint, so each record is processed once in
  the state that checkpoint holds (replays are undone by the transactional sink).
- Offsets are also committed to the consumer group when a checkpoint completes
  (for lag monitoring and for a fresh start without a checkpoint); a fresh job
  starts from the group's committed offsets, or earliest when it has none.
- ``isolation.level=read_committed``: an upstream transactional producer's aborted
  records never enter (Kafka's default, read_uncommitted, would read them).
- ``bounded=True`` stops at the offsets that were latest when the job started; the
  job then finishes, and Flink's final checkpoint commits the last transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, StreamExecutionEnvironment
    from pyflink.table import TableDescriptor

__all__ = ["KafkaSourceSpec", "kafka_source_descriptor", "read_kafka_json"]


@dataclass(frozen=True)
class KafkaSourceSpec:
    """Where a job reads from.

    :param bootstrap: bootstrap servers.
    :param topic: the input topic.
    :param group_id: consumer group whose committed offsets a fresh start uses.
    :param bounded: stop at the latest offsets seen at start (demo/catch-up runs).
    :param properties: further consumer properties.
    """

    bootstrap: str
    topic: str
    group_id: str
    bounded: bool = False
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group_id:
            raise OnceflowError("the Kafka source needs a consumer group id (--group-id)")


def kafka_source_descriptor(spec: KafkaSourceSpec) -> TableDescriptor:
    """A table over ``KafkaSource``: ``v BYTES`` plus topic/partition/offset metadata."""
    from pyflink.table import DataTypes, Schema, TableDescriptor

    schema = (
        Schema.new_builder()
        .column("v", DataTypes.BYTES())
        .column_by_metadata("topic", DataTypes.STRING(), "topic", True)
        .column_by_metadata("partition", DataTypes.INT(), "partition", True)
        .column_by_metadata("offset", DataTypes.BIGINT(), "offset", True)
        .build()
    )
    builder = (
        TableDescriptor.for_connector("kafka")
        .schema(schema)
        .option("topic", spec.topic)
        .option("properties.bootstrap.servers", spec.bootstrap)
        .option("properties.group.id", spec.group_id)
        .option("scan.startup.mode", "group-offsets")
        .option("properties.auto.offset.reset", "earliest")
        # Aborted records of an upstream transactional producer must never enter.
        .option("properties.isolation.level", "read_committed")
        .option("value.format", "raw")
        # New partitions of the topic are picked up while the job runs.
        .option("scan.topic-partition-discovery.interval", "30s")
    )
    if spec.bounded:
        builder = builder.option("scan.bounded.mode", "latest-offset")
    for key, value in spec.properties.items():
        builder = builder.option(f"properties.{key}", value)
    return builder.build()


def read_kafka_json(
    env: StreamExecutionEnvironment, spec: KafkaSourceSpec, *, uid: str = "source"
) -> DataStream:
    """JSON records (:func:`onceflow.streams.json_record_type`) from Flink's ``KafkaSource``.

    Each record is its raw value and where it came from; the operators parse it,
    so any bytes the topic holds reach them (malformed ones become dead
    letters). The source's operators are named after ``uid`` whatever the
    environment sets, so its offsets in a savepoint map back after a redeploy.
    """
    from onceflow.streams import json_record_type, stable_uids, table_env

    tenv = table_env(env)
    with stable_uids(tenv, uid):
        name = uid.replace("-", "_").replace(".", "_")
        tenv.create_temporary_table(name, kafka_source_descriptor(spec))
        return tenv.to_append_stream(tenv.from_path(name), json_record_type())

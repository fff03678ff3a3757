"""Order status, exactly-once: your source and your code, onceflow's operators and sinks.

Order events arrive on a Kafka topic as JSON, some of them twice (producer
retries) and out of order; the job keeps each order's latest status:

    your KafkaSource -> your parse -> onceflow dedup (by event id)
    -> your enrich step -> onceflow versioned update (newest version per order)
    -> exactly-once Kafka (status, rejected, dead letters) + Parquet change log

Run it against the local stack (``make up``)::

    python examples/orders.py --input-topic orders --prefix orders-1 --changes-path run/orders
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

import onceflow

# Your records: a Row type you declare (the operators key it in the JVM by a column).
ORDER_EVENT = Types.ROW_NAMED(
    ["event_id", "order_id", "version", "status", "amount"],
    [Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.DOUBLE()],
)
ORDER_STATUS = Types.ROW_NAMED(
    ["order_id", "version", "status", "amount_cents"],
    [Types.STRING(), Types.LONG(), Types.STRING(), Types.LONG()],
)


def parse(text: str) -> Row:
    """Your parsing: a line that is not an order event keeps no id (a dead letter)."""
    try:
        doc = json.loads(text)
        return Row(
            str(doc["event_id"]),
            str(doc["order_id"]),
            int(doc["version"]),
            str(doc["status"]),
            float(doc["amount"]),
        )
    except (ValueError, TypeError, KeyError):
        return Row(None, None, None, None, None)


def enrich(event: Row) -> Row:
    """Your business step between the two operators."""
    return Row(event[1], event[2], event[3].upper(), round(event[4] * 100))


def build(env: Any, args: argparse.Namespace) -> None:
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.input_topic)
        .set_group_id(f"{args.prefix}-group")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
    )
    if args.bounded:
        source = source.set_bounded(KafkaOffsetsInitializer.latest())
    lines = env.from_source(source.build(), WatermarkStrategy.no_watermarks(), "orders")
    events = lines.uid("orders-source").map(parse, output_type=ORDER_EVENT).uid("parse")

    deduped = onceflow.dedup(events, id_field="event_id", ttl_ms=7 * 24 * 3600 * 1000)
    statuses = deduped.passed.map(enrich, output_type=ORDER_STATUS).uid("enrich")
    updated = onceflow.versioned_update(statuses, key_field="order_id", version_field="version")

    def kafka(topic: str) -> onceflow.KafkaSinkSpec:
        return onceflow.KafkaSinkSpec(
            bootstrap=args.bootstrap,
            topic=topic,
            guarantee=args.guarantee,
            transactional_id_prefix=f"{args.prefix}-{topic}",
        )

    onceflow.write_kafka(
        updated.applied, kafka(args.status_topic), uid="status-sink", key_field="order_id"
    )
    rejected = updated.stale.union(updated.conflicts)
    onceflow.write_kafka(rejected, kafka(args.rejected_topic), uid="rejected-sink")
    dead = deduped.dead_letters.union(updated.dead_letters)
    onceflow.write_kafka(dead, kafka(args.dlq_topic), uid="dlq-sink")
    log = onceflow.FileSinkSpec(args.changes_path, schema=onceflow.CHANGES_SCHEMA)
    onceflow.write_files(updated.changes, log, uid="changes-files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--input-topic", default="orders")
    parser.add_argument("--status-topic", default="order-status")
    parser.add_argument("--rejected-topic", default="order-rejected")
    parser.add_argument("--dlq-topic", default="orders-dlq")
    parser.add_argument("--changes-path", default="run/order-changes")
    parser.add_argument("--prefix", default="orders-example", help="transactional id prefix")
    parser.add_argument("--guarantee", default="exactly-once")
    parser.add_argument("--bounded", action="store_true", help="stop at the input's end")
    args = parser.parse_args()
    env = onceflow.environment(checkpoint_interval_ms=2000)
    build(env, args)
    env.execute("orders-example")


if __name__ == "__main__":
    main()

"""A PyFlink job on the mini-cluster: KafkaSource -> Python -> KafkaSink EXACTLY_ONCE."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from kafka import KafkaProducer

from onceflow.testing.drain import read_committed
from onceflow.testing.harness import run_to_end


def test_smoke_job_output_equals_input_read_committed(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    source = topic_factory("in", partitions=2)
    sink = topic_factory("out")
    values = [f"record-{i}".encode() for i in range(2000)] + [b"\xff\xfe not utf-8", b""]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i, value in enumerate(values):
        producer.send(source, value, partition=i % 2)
    producer.flush()
    producer.close()

    args = [
        "--bootstrap",
        kafka_bootstrap,
        "--input-topic",
        source,
        "--output-topic",
        sink,
        "--transactional-id-prefix",
        unique_name("tx"),
        "--group-id",
        unique_name("group"),
        "--checkpoint-interval-ms",
        "1000",
        "--bounded",
    ]
    job = run_to_end("onceflow.jobs.smoke", args, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]

    records = read_committed(kafka_bootstrap, sink, quiet_ms=2000, progress=False)
    assert Counter(r.value for r in records) == Counter(values)

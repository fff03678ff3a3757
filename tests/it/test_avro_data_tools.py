"""``onceflow produce --format avro`` and ``onceflow check`` on Avro, against the real broker
and the local registry. No job runs: the checker reads the raw input (every duplicate and
malformed record must show) and a hand-made perfect dedup output (which must pass)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from onceflow.avro.registry import SchemaRegistry
from onceflow.avro.wire import AvroDecoder, Decoded
from onceflow.testing import check, produce
from onceflow.testing.avro_workload import workload_schema
from onceflow.testing.check import avro_id_of, check_output
from onceflow.testing.drain import read_committed
from onceflow.testing.workload import Expectation

pytestmark = pytest.mark.it

QUIET_MS = 1000


def _parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


def test_produce_avro_then_check_decodes_by_schema_id(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    source = unique_name("avro_in")  # produce creates it
    expect = tmp_path / "expect.json.gz"
    argv = ["--bootstrap", kafka_bootstrap, "--topic", source, "--count", "3000"]
    argv += ["--duplicates", "0.2", "--malformed", "0.02", "--seed", "11", "--partitions", "2"]
    argv += ["--oversize-bytes", "20000", "--expect", str(expect), "--no-progress"]
    argv += ["--format", "avro", "--registry-url", schema_registry_url]
    assert produce.run(_parse(produce, argv)) == 0

    exp = Expectation.load(expect)
    assert exp.value_format == "avro"
    assert (len(exp.unique_ids), exp.duplicates, exp.malformed) == (2_340, 600, 60)

    # The schema went to <topic>-value; valid records carry its id.
    registry = SchemaRegistry(schema_registry_url)
    latest = registry.latest(f"{source}-value")
    assert latest is not None and latest.version == 1
    decoder = AvroDecoder.from_registry(registry, workload_schema())
    records = read_committed(kafka_bootstrap, source, quiet_ms=QUIET_MS, progress=False)
    assert len(records) == 3_000
    decoded = [decoder.decode(r.value) for r in records if r.key is not None]
    assert all(isinstance(d, Decoded) and d.schema_id == latest.schema.schema_id for d in decoded)

    # The raw input: the checker sees every duplicate and malformed record, in Avro.
    raw = check_output(exp.unique_ids, records, id_of=avro_id_of(decoder))
    oversize = sum(r == "oversize" for r in exp.malformed_reasons)
    assert oversize >= 1
    assert (raw.duplicated, raw.missing) == (exp.duplicates, 0)
    assert raw.unexpected == oversize  # well-formed records with ids nobody expects
    assert raw.invalid == exp.malformed - oversize

    # A perfect dedup output passes `onceflow check` (format from the expectation);
    # one extra copy fails it.
    first: dict[str, bytes] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.key is not None and r.value is not None:
            first.setdefault(r.key.decode(), r.value)
    out = topic_factory("avro_out")
    bad = topic_factory("avro_out_dup")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for ident in exp.unique_ids:
        producer.send(out, first[ident])
        producer.send(bad, first[ident])
    producer.send(bad, first[exp.unique_ids[0]])
    producer.flush()
    producer.close()
    common = ["--bootstrap", kafka_bootstrap, "--expect", str(expect), "--no-progress"]
    common += ["--quiet-ms", str(QUIET_MS), "--registry-url", schema_registry_url]
    assert check.run(_parse(check, [*common, "--topic", out])) == 0
    assert check.run(_parse(check, [*common, "--topic", bad])) == 1
    # Read as JSON, the same Avro output is all invalid.
    assert check.run(_parse(check, [*common, "--topic", out, "--format", "json"])) == 1

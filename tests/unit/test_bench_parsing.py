"""The benchmark's pure parts: tool-output parsers, selection, percentiles, report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from onceflow.bench.__main__ import ALL, select
from onceflow.bench.kafka_tools import parse_consumer_perf, parse_copier, parse_producer_perf
from onceflow.bench.report import add_ratios, render_markdown
from onceflow.bench.stream import percentile, stamp
from onceflow.errors import OnceflowError

PRODUCER_OUT = """Reading payloads from: /tmp/payloads.txt
Number of messages read: 10000
102305 records sent, 20456.9 records/sec (3.90 MB/sec), 900.1 ms avg latency, 1500.0 ms max latency.
200000 records sent, 51506.6 records/sec (9.82 MB/sec), 1530.77 ms avg latency, 2031.00 ms max \
latency, 1720 ms 50th, 1940 ms 95th, 2021 ms 99th, 2030 ms 99.9th.
"""

CONSUMER_OUT = """start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, \
nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-26 22:21:26:239, 2026-11-26 22:21:28:138, 40.0543, 21.0923, 200000, 105318.5887, 420, \
1479, 27.0820, 135226.5044
"""

COPIER_OUT = "\n".join(
    [
        '{"transactionalId":"t","stage":"ProcessLoop","time":"2026/11/26 22:21:32:967",'
        '"totalProcessed":0,"consumed":0,"remaining":9223372036854775807}',
        '{"transactionalId":"t","stage":"RebalanceComplete","time":"2026/11/26 22:21:33:252",'
        '"totalProcessed":0,"consumed":0,"remaining":200000}',
        "some log line",
        '{"transactionalId":"t","stage":"ShutdownComplete","time":"2026/11/26 22:21:46:160",'
        '"totalProcessed":200000,"consumed":200000,"remaining":0}',
    ]
)


def test_producer_perf_summary_is_the_last_full_line() -> None:
    figures = parse_producer_perf(PRODUCER_OUT)
    assert figures["records"] == 200000
    assert figures["records_per_s"] == pytest.approx(51506.6)
    assert figures["p99_ms"] == 2021


def test_consumer_perf_columns_by_name() -> None:
    figures = parse_consumer_perf(CONSUMER_OUT)
    assert figures["fetch.nMsg.sec"] == pytest.approx(135226.5044)
    assert figures["nMsg.sec"] == pytest.approx(105318.5887)
    assert "start.time" not in figures


def test_copier_status_lines() -> None:
    figures = parse_copier(COPIER_OUT)
    assert figures["total_processed"] == 200000
    assert figures["shutdown_complete"] is True
    assert figures["tool_seconds"] == pytest.approx(12.908)


@pytest.mark.parametrize("parse", [parse_producer_perf, parse_consumer_perf, parse_copier])
def test_tool_failure_output_is_refused(parse: Callable[[str], object]) -> None:
    with pytest.raises(ValueError):
        parse("Exception in thread main: org.apache.kafka.common.errors.TimeoutException")


def test_select_by_name_family_and_glob() -> None:
    assert select(None) == list(ALL)
    assert select("kafka-eos-copier,sql") == ["kafka-eos-copier", "flink-sql"]
    assert select("latency") == ["latency-1s", "latency-5s"]
    assert "flink-py-process-bundle" in select("flink-py-process*")
    assert select("recovery")[-1] == "recovery" and list(ALL)[-1] == "recovery"
    with pytest.raises(OnceflowError, match="matches no contender"):
        select("spark")


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_stamp_adds_the_produce_time_to_a_json_object() -> None:
    assert stamp(b'{"id":"m-1"}', 1234) == b'{"id":"m-1","produced_ms":1234}'
    with pytest.raises(ValueError):
        stamp(b"[1,2]", 1)


def _row(name: str, family: str, rate: float | None, status: str = "ok") -> dict[str, Any]:
    return {
        "name": name,
        "family": family,
        "config": "c",
        "status": status,
        "records": 1000,
        "records_per_s": rate,
        "seconds": 1.0,
        "exact": True,
        "time_boxed": False,
        "load1": 1.0,
        "error": None if status == "ok" else "boom",
    }


def test_ratios_and_report() -> None:
    doc: dict[str, Any] = {
        "run_id": "20260101-000000",
        "date": "2026-01-01T00:00:00+00:00",
        "command": "python -m onceflow.bench",
        "machine": {"nproc": 2, "cpu_model": "Xeon", "memory_gib": 23.5, "os": "Linux"},
        "workload": {
            "count": 1000,
            "payload_bytes": 200,
            "duplicate_ratio": 0.2,
            "unique": 800,
            "partitions": 4,
            "produce_s": 1.0,
            "input_topic": "in",
        },
        "time_box_s": 100.0,
        "duration_s": 60.0,
        "contenders": [
            _row("kafka-consumer-perf", "kafka", 100_000.0),
            _row("flink-sql", "sql", 20_000.0),
            _row("flink-py-baseline", "flink", 5_000.0),
            _row("quix-eos", "quix", None, status="skipped"),
            _row("versioned-sql", "versioned", 40_000.0),
            _row("versioned-py", "versioned", 4_000.0),
        ],
        "latency": [],
        "recovery": None,
        "profile": None,
        "errors": [],
    }
    add_ratios(doc)
    rows = {r["name"]: r for r in doc["contenders"]}
    assert rows["flink-py-baseline"]["ratio_to_ceiling"] == 0.05
    assert rows["flink-py-baseline"]["ratio_to_sql"] == 0.25
    assert rows["quix-eos"]["ratio_to_sql"] is None
    # The versioned family is compared with its own JVM reference, not the dedup's.
    assert rows["versioned-py"]["ratio_to_sql"] == 0.1
    assert rows["versioned-py"]["reference"] == "versioned-sql"
    assert rows["flink-py-baseline"]["reference"] == "flink-sql"
    text = render_markdown(doc)
    assert "| flink-py-baseline | c | 5,000 | 0.050 | 0.25 |" in text
    assert "2 CPUs (Xeon), 23.5 GiB RAM" in text
    assert "**quix-eos** (skipped): boom" in text

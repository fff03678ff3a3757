"""The benchmark's pure parts: tool-output parsers, selection, rounds, percentiles, report
(repeated rows and their median run, goals, exactly-once costs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from onceflow.bench.__main__ import ALL, THROUGHPUT, rounds, select
from onceflow.bench.kafka_tools import parse_consumer_perf, parse_copier, parse_producer_perf
from onceflow.bench.repeats import add_run, median_run, paired_costs, rates, spread
from onceflow.bench.report import EOS_PAIRS, GOALS, add_ratios, compared, render_markdown
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


def _doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
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
        "repeat": 3,
        "duration_s": 60.0,
        "contenders": rows,
        "latency": [],
        "recovery": None,
        "profile": None,
        "errors": [],
    }


def test_ratios_and_report() -> None:
    doc = _doc(
        [
            _row("kafka-consumer-perf", "kafka", 100_000.0),
            _row("flink-sql", "sql", 20_000.0),
            _row("flink-py-baseline", "flink", 5_000.0),
            _row("quix-eos", "quix", None, status="skipped"),
            _row("versioned-sql", "versioned", 40_000.0),
            _row("versioned-py", "versioned", 4_000.0),
        ]
    )
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


def _run(name: str, rate: float | None, **fields: Any) -> dict[str, Any]:
    """One run of a contender: ``rate`` None is a failed run."""
    row = _row(name, "flink", rate, status="ok" if rate else "failed")
    return {**row, "seconds": 1000 / rate if rate else None, "broker_restarted": False, **fields}


def _rows(*runs: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for run in runs:
        add_run(rows, run)
    return rows


def test_the_median_run_stands_for_the_row_with_its_own_figures() -> None:
    row = median_run([_run("a", 300.0), _run("a", 100.0), _run("a", 200.0)])
    assert row["records_per_s"] == 200.0 and row["seconds"] == 5.0
    assert rates(row) == [300.0, 100.0, 200.0]
    assert spread(row) == (100.0, 300.0)
    # Two runs: the lower one (a real run, not an average); a failed run is not a figure.
    assert median_run([_run("a", 300.0), _run("a", 100.0)])["records_per_s"] == 100.0
    assert median_run([_run("a", None), _run("a", 300.0)])["records_per_s"] == 300.0
    failed = median_run([_run("a", None)])
    assert failed["status"] == "failed" and spread(failed) is None


def test_one_inexact_run_or_one_broker_restart_marks_the_row() -> None:
    row = median_run([_run("a", 100.0), _run("a", 200.0, exact=False), _run("a", 300.0)])
    assert row["records_per_s"] == 200.0 and row["exact"] is False
    restarted = median_run([_run("a", 100.0, broker_restarted=True), _run("a", 200.0)])
    assert restarted["broker_restarted"] is True
    unchecked = median_run([_run("a", 100.0, exact=None)])
    assert unchecked["exact"] is None


def test_add_run_keeps_the_place_of_a_contender_seen_before() -> None:
    rows = _rows(_run("a", 10.0), _run("b", 20.0), _run("a", 30.0), _run("a", 20.0))
    assert [row["name"] for row in rows] == ["a", "b"]
    assert rows[0]["records_per_s"] == 20.0 and len(rows[0]["runs"]) == 3
    assert rows[1]["runs"] == [_run("b", 20.0)]


def test_exactly_once_cost_per_round() -> None:
    eos = median_run([_run("e", 90.0), _run("e", None), _run("e", 120.0)])
    alo = median_run([_run("l", 100.0), _run("l", 100.0), _run("l", 100.0)])
    assert paired_costs(eos, alo) == pytest.approx([0.1, -0.2])


def test_rounds_repeat_only_the_compared_throughput_rows_every_other_round_reversed() -> None:
    chosen = ["kafka-eos-copier", "flink-sql", "flink-jvm", "flink-jvm-alo", "profile"]
    plan = rounds(chosen, 3)
    assert plan[0] == chosen
    assert plan[1] == ["flink-jvm-alo", "flink-jvm", "flink-sql"]
    assert plan[2] == ["flink-sql", "flink-jvm", "flink-jvm-alo"]
    assert rounds(chosen, 1) == [chosen]
    assert rounds(["kafka-eos-copier", "latency-1s"], 3) == [["kafka-eos-copier", "latency-1s"]]


def test_every_goal_and_pair_names_contenders_the_bench_runs() -> None:
    assert compared() <= set(THROUGHPUT)
    assert {goal.name for goal in GOALS} <= compared()
    assert set(EOS_PAIRS) | set(EOS_PAIRS.values()) <= compared()


def test_the_report_checks_each_goal_and_exactly_once_cost_on_median_runs() -> None:
    rows = _rows(
        *(_run("flink-sql", r) for r in (60_000.0, 50_000.0, 70_000.0)),
        *(_run("flink-jvm", r) for r in (50_000.0, 58_000.0, 40_000.0)),
        *(_run("flink-jvm-alo", r) for r in (60_000.0, 60_000.0, 60_000.0)),
        _run("quix-eos", 30_000.0),
        _run("versioned-jvm", 20_000.0),
        _run("flink-py-baseline", None),
    )
    text = render_markdown(_with_bases(_doc(rows)))
    # 50,000 / 60,000: short of 0.9x; 50,000 / 30,000 meets 1.5x.
    assert "| flink-jvm / flink-sql | **0.83x** | >= 0.9x | **no** |" in text
    assert "| flink-jvm / quix-eos | **1.67x** | >= 1.5x | yes |" in text
    assert "| versioned-jvm / 4,100 records/s | **4.88x** | >= 4x | yes |" in text
    cost = "| 1 - flink-jvm / flink-jvm-alo | **16.7%** (each round: 16.7%, 3.3%, 33.3%) "
    assert cost + "| <= 10% | **no** |" in text
    assert "| flink-jvm | c | 50,000 (median of 3: 40,000–58,000) |" in text
    # No goal without both of its rows: the fingerprint row did not run, the Python path failed.
    assert "flink-jvm-fingerprint /" not in text and "flink-py-baseline /" not in text
    assert "**flink-py-baseline** (failed): boom" in text


def test_a_run_that_failed_among_good_ones_is_reported() -> None:
    rows = _rows(_run("flink-sql", 100.0), _run("flink-sql", None), _run("flink-sql", 300.0))
    assert rows[0]["status"] == "ok"
    assert "**flink-sql (run 2 of 3)** (failed): boom" in render_markdown(_with_bases(_doc(rows)))


def _with_bases(doc: dict[str, Any]) -> dict[str, Any]:
    add_ratios(doc)
    return doc

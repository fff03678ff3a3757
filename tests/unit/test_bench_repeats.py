"""The benchmark's repeated rows: rounds, the median run, exactly-once costs, goals."""

from __future__ import annotations

from typing import Any

import pytest

from onceflow.bench.__main__ import rounds
from onceflow.bench.repeats import add_run, median_run, paired_costs, rates, spread
from onceflow.bench.report import EOS_PAIRS, GOALS, compared, render_markdown


def _run(name: str, rate: float | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "family": "flink",
        "config": "c",
        "status": "ok" if rate else "failed",
        "records": 1000,
        "records_per_s": rate,
        "seconds": 1000 / rate if rate else None,
        "exact": True,
        "time_boxed": False,
        "load1": 1.0,
        "error": None if rate else "boom",
        "broker_restarted": False,
    }
    return {**row, **fields}


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
    from onceflow.bench.__main__ import THROUGHPUT

    assert compared() <= set(THROUGHPUT)
    assert {goal.name for goal in GOALS} <= compared()
    assert set(EOS_PAIRS) | set(EOS_PAIRS.values()) <= compared()


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
        },
        "time_box_s": 100.0,
        "repeat": 3,
        "duration_s": 60.0,
        "contenders": rows,
        "ceiling": {"name": "kafka-consumer-perf", "records_per_s": None},
        "reference": {"name": "flink-sql", "records_per_s": None},
        "latency": [],
        "recovery": None,
        "profile": None,
        "errors": [],
    }


def test_the_report_checks_each_goal_and_exactly_once_cost_on_median_runs() -> None:
    rows = _rows(
        *(_run("flink-sql", r) for r in (60_000.0, 50_000.0, 70_000.0)),
        *(_run("flink-jvm", r) for r in (50_000.0, 58_000.0, 40_000.0)),
        *(_run("flink-jvm-alo", r) for r in (60_000.0, 60_000.0, 60_000.0)),
        _run("quix-eos", 30_000.0),
        _run("versioned-jvm", 20_000.0),
        _run("flink-py-baseline", None),
    )
    text = render_markdown(_doc(rows))
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
    assert "**flink-sql (run 2 of 3)** (failed): boom" in render_markdown(_doc(rows))

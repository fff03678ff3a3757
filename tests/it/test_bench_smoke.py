"""The benchmark harness (``make bench``) on a tiny workload: files and fields.

Runs ``python -m onceflow.bench`` on 3,000 records with its fast contenders --
Kafka's ConsumerPerformance (the ceiling) and EOS copier, the Flink SQL dedup
(the reference), the versioned family's reference on its own change events, the
operator profile -- against the test broker, the compared rows twice
(``--repeat 2``), then checks the result JSON: machine and workload described,
every throughput positive and divided by the ceiling and the SQL figure, exact
output in every run, and the Markdown and PNG next to it. The full run
(``make bench``) takes about an hour and is not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

from onceflow.testing.harness import run_to_end

CONTENDERS = ("kafka-consumer-perf", "kafka-eos-copier", "flink-sql", "versioned-sql")


def test_bench_harness_on_a_tiny_workload(kafka_bootstrap: str, tmp_path: Path) -> None:
    args = [
        "--records",
        "3000",
        "--only",
        ",".join([*CONTENDERS, "profile"]),
        "--out",
        str(tmp_path),
        "--bootstrap",
        kafka_bootstrap,
        "--repeat",
        "2",
    ]
    done = run_to_end("onceflow.bench", args, timeout=360)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    doc = json.loads(result.read_text())

    for key in ("run_id", "date", "command", "machine", "workload", "contenders", "ceiling"):
        assert key in doc, key
    machine = doc["machine"]
    assert machine["nproc"] >= 1 and machine["memory_gib"] > 0 and machine["cpu_model"]
    assert doc["workload"]["count"] == 3000 and doc["workload"]["unique"] == 2400
    assert doc["ceiling"]["name"] == "kafka-consumer-perf" and doc["ceiling"]["records_per_s"] > 0
    assert doc["reference"]["name"] == "flink-sql" and doc["reference"]["records_per_s"] > 0

    rows = {row["name"]: row for row in doc["contenders"]}
    assert set(rows) == set(CONTENDERS)
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        assert row["records_per_s"] > 0, name
        assert row["ratio_to_ceiling"] > 0 and row["ratio_to_sql"] > 0, name
        assert row["method"], name
        # The versioned family reads its own change events, about as many records.
        assert row["records"] == 3000 or (name == "versioned-sql" and 2900 < row["records"] < 3100)
    # Read back read_committed: each unique id once (SQL), every record once (copier).
    assert rows["flink-sql"]["exact"] is True and rows["flink-sql"]["outputs"] == 2400
    assert rows["kafka-eos-copier"]["exact"] is True
    assert rows["flink-sql"]["ratio_to_sql"] == 1.0
    # The references ran again in a second round, on fresh topics: one row, two exact runs.
    for name in ("kafka-consumer-perf", "flink-sql", "versioned-sql"):
        runs = rows[name]["runs"]
        assert len(runs) == 2 and all(run["status"] == "ok" for run in runs), name
        assert rows[name]["records_per_s"] == min(run["records_per_s"] for run in runs), name
    assert [run["outputs"] for run in rows["flink-sql"]["runs"]] == [2400, 2400]
    assert len(rows["kafka-eos-copier"]["runs"]) == 1
    # The versioned reference: the oracle's last version of every key, its own ratio base.
    assert rows["versioned-sql"]["exact"] is True, rows["versioned-sql"]
    assert rows["versioned-sql"]["reference"] == "versioned-sql"
    assert rows["versioned-sql"]["ratio_to_sql"] == 1.0

    profile = doc["profile"]
    assert profile["per_record_us"]["parse_object (json.loads + strict checks)"] > 0
    assert profile["top_functions"]

    markdown = result.with_suffix(".md").read_text()
    assert "| flink-sql |" in markdown and f"{machine['nproc']} CPUs" in markdown
    assert "(median of 2: " in markdown
    assert result.with_suffix(".png").stat().st_size > 0

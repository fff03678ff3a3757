"""examples/orders.py end to end on the mini-cluster, read back as committed readers would.

The user's pipeline (their KafkaSource and parse -> onceflow dedup -> their
enrich step -> onceflow versioned update -> exactly-once Kafka and Parquet)
runs on a workload with duplicates, out-of-order versions, conflicts and lines
that are not events, with one injected failure in each operator; its outputs
must equal an oracle built from the pure cores. The same run with an
at-least-once sink must show duplicates (the check can fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer
from orders_workload import committed_statuses, oracle, order_lines

from onceflow.runtime.paths import project_root
from onceflow.sinks.files import read_committed_parquet
from onceflow.testing.drain import read_committed

EXAMPLE = project_root() / "examples" / "orders.py"


def run_example(
    bootstrap: str, names: dict[str, str], changes: Path, guarantee: str, faults: Path
) -> subprocess.CompletedProcess[str]:
    armed = {
        "dedup": {"points": ["e-0100-3"], "dir": str(faults)},
        "versioned-update": {"points": ["o-0150@4"], "dir": str(faults)},
    }
    args = [f"--{flag}={value}" for flag, value in names.items()]
    args += [f"--bootstrap={bootstrap}", f"--changes-path={changes}"]
    args += [f"--guarantee={guarantee}", "--bounded"]
    env = {**os.environ, "ONCEFLOW_FAULTS": json.dumps(armed)}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=project_root(),
    )


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_orders_example_outputs_equal_the_oracle_after_a_failure_in_each_operator(
    guarantee: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    names = {
        "input-topic": topic_factory("orders"),
        "status-topic": topic_factory("status"),
        "rejected-topic": topic_factory("rejected"),
        "dlq-topic": topic_factory("dlq"),
        "prefix": unique_name("orders"),
    }
    lines = order_lines()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for line in lines:
        producer.send(names["input-topic"], line)
    producer.flush()
    producer.close()

    done = run_example(kafka_bootstrap, names, tmp_path / "changes", guarantee, tmp_path / "f")
    assert done.returncode == 0, done.stderr[-4000:]
    fired = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert fired == ["e-0100-3.fired", "o-0150@4.fired"], fired

    applied, rejected, dead = oracle(lines)
    status = read_committed(kafka_bootstrap, names["status-topic"], quiet_ms=2000, progress=False)
    got = committed_statuses([r.value for r in status])
    if guarantee == "at-least-once":
        # The control: the same failures with a non-transactional sink duplicate output.
        assert sum(got.values()) > len(applied) and set(got) == set(applied), got
        return
    assert got == Counter(applied)
    assert all(r.key == json.loads(r.value)["order_id"].encode() for r in status)
    reports = read_committed(
        kafka_bootstrap, names["rejected-topic"], quiet_ms=1000, progress=False
    )
    assert Counter(json.loads(r.value)["outcome"] for r in reports) == rejected
    assert rejected["stale"] > 100 and rejected["conflict"] == 10, rejected
    letters = read_committed(kafka_bootstrap, names["dlq-topic"], quiet_ms=1000, progress=False)
    assert len(letters) == dead == 5
    assert {json.loads(r.value)["reason"] for r in letters} == {"missing_field"}
    log = read_committed_parquet(tmp_path / "changes").to_pylist()
    assert Counter((row["key"], row["version"]) for row in log) == Counter(applied)

"""``onceflow txn``'s pure parts and the prefix record: Kafka's tool tables, prefix
matching, what a transaction pins, a job's outputs read from its flags."""

from __future__ import annotations

from pathlib import Path

from onceflow.ops.prefixes import JobOutputs, check_prefix, job_outputs, record_prefix
from onceflow.ops.transactions import (
    OpenTransaction,
    PartitionPin,
    Stuck,
    matches_prefix,
    parse_tool_table,
    render_open,
)

# `kafka-transactions find-hanging` output (tab-separated, padded), one row.
FIND_HANGING = (
    "Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\t"
    "LastTimestamp\tDuration(min)\t\n"
    "out  \t1        \t2000       \t0            \t-1              \t42         \t"
    "1795814311464\t20           \t\n"
)


def test_the_tool_table_is_read_by_header() -> None:
    [row] = parse_tool_table("SLF4J: noise\n" + FIND_HANGING)
    assert row["Topic"] == "out" and row["StartOffset"] == "42" and row["Duration(min)"] == "20"
    assert parse_tool_table(FIND_HANGING.splitlines()[0] + "\n") == []
    assert parse_tool_table("") == []


def test_a_prefix_claims_its_own_ids_only() -> None:
    assert matches_prefix("dedup-1-out-0-7", "dedup-1")
    assert matches_prefix("dedup-1", "dedup-1")
    assert not matches_prefix("dedup-10-out-0-7", "dedup-1")
    assert matches_prefix("anything", None)


def test_what_an_open_transaction_pins() -> None:
    pinning = PartitionPin("out", 0, start_offset=3, last_stable_offset=3, high_watermark=9)
    behind = PartitionPin("out", 1, start_offset=5, last_stable_offset=2, high_watermark=8)
    empty = PartitionPin("out", 2, start_offset=None, last_stable_offset=4, high_watermark=4)
    assert pinning.pins and pinning.lag == 6
    assert not behind.pins and behind.lag == 6  # another transaction holds the LSO there
    assert not empty.pins and empty.lag == 0
    t = OpenTransaction("p-0-1", "Ongoing", 7, 0, 600_000, 1_000, (pinning, behind, empty))
    assert t.lag == 6 and t.age_s(61_000) == 60.0
    text = render_open([t], 61_000)
    assert "p-0-1" in text and "pins the LSO, 6 offsets behind" in text and "60 s" in text
    assert render_open([]) == "no open transactions"
    stuck = Stuck([t], [])
    assert stuck and stuck.lines()[0].startswith("lingering p-0-1 (Ongoing) on out-0")
    assert not Stuck()


def test_a_jobs_outputs_come_from_its_flags_and_config(tmp_path: Path) -> None:
    out = job_outputs(
        ["--input-topic", "in", "--output-topic", "out", "--dlq-topic=dlq",
         "--transactional-id-prefix", "dedup-1", "--bootstrap", "b:1", "--parallelism", "2"]
    )  # fmt: skip
    assert out == JobOutputs("b:1", "dedup-1", ("dlq", "out"), True)
    config = tmp_path / "job.yaml"
    config.write_text("applied-topic: entities\nstale_topic: stale\ntransactional-id-prefix: v-1\n")
    out = job_outputs(["--config", str(config), "--guarantee", "at-least-once"])
    assert out.topics == ("entities", "stale") and out.prefix == "v-1" and not out.exactly_once


def test_a_changed_prefix_is_warned_about_and_the_same_one_is_not(tmp_path: Path) -> None:
    record = tmp_path / "prefixes.json"
    first = JobOutputs("b:1", "dedup-1", ("dlq", "out"), True)
    assert check_prefix(first, path=record, live=False) == []  # nothing recorded yet
    record_prefix(first, "jobs/dedup.py", path=record)
    assert check_prefix(first, path=record, live=False) == []
    [warning] = check_prefix(JobOutputs("b:1", "dedup-2", ("out",), True), path=record, live=False)
    assert "out was last written with transactional id prefix 'dedup-1'" in warning
    assert "keep 'dedup-1'" in warning and "onceflow txn abort --prefix dedup-1" in warning
    # Another cluster, or an at-least-once job (no transactions): nothing to say.
    assert check_prefix(JobOutputs("c:1", "dedup-2", ("out",), True), path=record, live=False) == []
    assert check_prefix(JobOutputs("b:1", "x", ("out",), False), path=record, live=False) == []

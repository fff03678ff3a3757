"""The verifier's targets: workload size, failure points, per-key order check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onceflow.errors import OnceflowError
from onceflow.operators.faults import marker_stem
from onceflow.operators.versioned.core import ChangeEvent
from onceflow.testing.drain import ConsumedRecord
from onceflow.verify.faults import Profile
from onceflow.verify.targets import (
    TARGETS,
    DedupTarget,
    VersionedUpsertPostgresTarget,
    VersionedUpsertTarget,
    check_format,
    compare_table,
    expected_table,
    nonmonotonic,
)


def _record(key: bytes, offset: int, doc: object, partition: int = 0) -> ConsumedRecord:
    return ConsumedRecord(
        topic="out",
        partition=partition,
        offset=offset,
        timestamp=0,
        key=key,
        value=json.dumps(doc).encode(),
    )


def test_nonmonotonic_counts_a_key_going_backwards_in_offset_order() -> None:
    records = [
        _record(b"a", 0, {"v": 1}),
        _record(b"b", 1, {"v": 9}),
        _record(b"a", 2, {"v": 3}),
        _record(b"a", 3, {"v": 2}),  # backwards for a
        _record(b"b", 4, {"v": 10}),
    ]
    assert nonmonotonic(records, "v") == 1
    assert nonmonotonic(list(reversed(records)), "v") == 1  # offsets decide, not list order
    # Records without the field (tombstones, reports) are not judged.
    assert nonmonotonic([*records[:3], _record(b"a", 5, {"x": 0})], "v") == 0


@pytest.mark.parametrize("target_type", [DedupTarget, VersionedUpsertTarget])
def test_workload_size_follows_the_profile(
    target_type: type[DedupTarget] | type[VersionedUpsertTarget],
) -> None:
    target = target_type()
    records = target.prepare(Profile(records=6_000, rate=1_000, faults=6), seed=2)
    assert 5_700 <= records <= 6_300
    assert set(target.topics) >= {"in", target.watch}


def test_versioned_failure_points_are_first_arrivals_of_distinct_changes() -> None:
    target = VersionedUpsertTarget()
    target.prepare(Profile(records=3_000, rate=1_000, faults=6), seed=5)
    points = target.fail_points([100, 100, 2_000])
    assert len(set(points)) == 3
    first_seen: dict[str, int] = {}
    for i, it in enumerate(target.items):
        if it.kind == "change":
            first_seen.setdefault(f"{it.entity}@{it.version}", i)
    # Each point is a change whose first arrival is at or after its position.
    assert all(first_seen[p] >= pos for p, pos in zip(points, [100, 100, 2_000], strict=True))
    # The job's marker names them as the verifier looks them up.
    assert all(marker_stem(p) == p for p in points)


def test_dedup_failure_points_are_distinct_unique_ids() -> None:
    target = DedupTarget()
    target.prepare(Profile(records=3_000, rate=1_000, faults=6), seed=5)
    points = target.fail_points([10, 10])
    assert len(set(points)) == 2
    unique = {it.ident for it in target.items if it.kind == "unique"}
    assert set(points) <= unique


def test_targets_are_named_as_on_the_command_line() -> None:
    assert sorted(TARGETS) == ["dedup", "versioned-upsert", "versioned-upsert-postgres"]
    assert all(TARGETS[name].name == name for name in TARGETS)
    assert [n for n in TARGETS if TARGETS[n].writes_postgres] == ["versioned-upsert-postgres"]


def test_expected_table_is_each_keys_last_applied_event_deletes_as_tombstones() -> None:
    applied = [
        ChangeEvent("a", 1, "upsert", {"v": 1, "x": "é"}),
        ChangeEvent("b", 1, "upsert", {"v": 1}),
        ChangeEvent("a", 3, "upsert", {"x": "é", "v": 3}),
        ChangeEvent("b", 2, "delete", None),
    ]
    assert expected_table(applied) == {
        "a": ("a", 3, False, '{"v":3,"x":"é"}'),  # canonical JSON text, as the job writes
        "b": ("b", 2, True, None),
    }


def test_compare_table_names_lost_extra_and_wrong_rows() -> None:
    expected = {
        "a": ("a", 3, False, '{"v":3}'),
        "b": ("b", 2, True, None),
        "c": ("c", 1, False, '{"v":1}'),
        "d": ("d", 5, False, '{"v":5}'),
    }
    rows = [
        ("a", 3, False, '{"v":3}'),  # right
        ("b", 2, False, None),  # deleted flag lost
        ("c", 0, False, '{"v":1}'),  # stepped back
        ("e", 1, False, "{}"),  # not in the oracle
    ]
    anomalies, examples = compare_table(expected, rows)
    assert anomalies == {"table-lost": 1, "table-extra": 1, "table-wrong-row": 2}
    assert examples["table-lost"] == [repr(expected["d"])]
    assert "'e'" in examples["table-extra"][0]
    assert len(examples["table-wrong-row"]) == 2
    assert compare_table(expected, list(expected.values()))[0] == {
        "table-lost": 0, "table-extra": 0, "table-wrong-row": 0,
    }  # fmt: skip


def test_postgres_target_writes_a_fresh_table_named_after_the_run() -> None:
    target = VersionedUpsertPostgresTarget()
    topics = {role: f"verify-20261127-194500-{role}" for role in target.topics}
    with pytest.raises(ValueError):
        target.job_args(topics, Path("/tmp/out"))  # no database yet
    target.pg_url = "postgresql://onceflow@127.0.0.1:5533/onceflow"
    args = target.job_args(topics, Path("/tmp/out"))
    assert args[args.index("--pg-url") + 1] == target.pg_url
    assert args[args.index("--pg-table") + 1] == "v_verify_20261127_194500_in" == target.table
    assert "--pg-create-table" in args and "--applied-topic" in args


def test_only_the_dedup_target_runs_in_avro_and_it_needs_a_registry() -> None:
    with pytest.raises(OnceflowError, match="runs in json, not avro"):
        VersionedUpsertTarget().use_format("avro", "http://127.0.0.1:1/apis/ccompat/v7", "in")
    # What `onceflow verify --format` checks before anything starts.
    with pytest.raises(OnceflowError, match="choose --format json"):
        check_format(TARGETS["versioned-upsert"], "avro")
    assert check_format(TARGETS["dedup"], "avro") == "avro"
    with pytest.raises(ValueError, match="registry"):
        DedupTarget().use_format("avro", None, "in")
    target = DedupTarget()
    target.use_format("avro", "http://127.0.0.1:1/apis/ccompat/v7", "verify-x-in")
    assert target.subject == "verify-x-in-value"
    args = target.job_args({"in": "i", "out": "o", "dlq": "d"}, Path("/tmp/out"))
    assert args[args.index("--format") + 1] == "avro"
    assert args[args.index("--registry-url") + 1] == "http://127.0.0.1:1/apis/ccompat/v7"
    json_args = DedupTarget().job_args({"in": "i", "out": "o", "dlq": "d"}, Path("/tmp/out"))
    assert "--format" not in json_args


def test_nonmonotonic_reads_values_through_the_given_decoder() -> None:
    # Values only the decoder can read (here: "<seq>" as text, not JSON objects).
    records = [
        ConsumedRecord(topic="out", partition=0, offset=n, timestamp=0, key=b"k", value=v)
        for n, v in enumerate([b"3", b"5", b"4", None])
    ]
    assert nonmonotonic(records, "seq") == 0  # JSON numbers have no "seq": none judged
    decode = lambda value: None if value is None else {"seq": int(value)}  # noqa: E731
    assert nonmonotonic(records, "seq", decode) == 1

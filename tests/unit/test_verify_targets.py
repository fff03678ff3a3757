"""The verifier's targets: workload size, failure points, per-key order check."""

from __future__ import annotations

import json

import pytest

from onceflow.operators.faults import marker_stem
from onceflow.testing.drain import ConsumedRecord
from onceflow.verify.faults import Profile
from onceflow.verify.targets import TARGETS, DedupTarget, VersionedUpsertTarget, nonmonotonic


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
    assert sorted(TARGETS) == ["dedup", "versioned-upsert"]
    assert all(TARGETS[name].name == name for name in TARGETS)

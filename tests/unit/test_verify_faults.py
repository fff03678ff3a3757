"""The verifier's fault schedule: seeded, every kind once, inside the feeding time."""

from __future__ import annotations

import pytest

from onceflow.verify.faults import FAULT_KINDS, PROFILES, Fault, schedule


def test_every_kind_appears_once_before_any_repeats() -> None:
    faults = schedule(seed=3, count=8, feed_seconds=100)
    first = [f.kind for f in faults[: len(FAULT_KINDS)]]
    assert sorted(first) == sorted(FAULT_KINDS)
    assert len(faults) == 8


def test_same_seed_same_schedule_other_seed_other_order() -> None:
    assert schedule(5, 6, 60) == schedule(5, 6, 60)
    orders = {tuple(f.kind for f in schedule(s, 6, 60)) for s in range(10)}
    assert len(orders) > 1


def test_faults_are_ordered_and_inside_the_feeding_time() -> None:
    faults = schedule(seed=1, count=24, feed_seconds=400)
    times = [f.at_s for f in faults]
    assert times == sorted(times)
    assert times[0] >= 0.1 * 400 and times[-1] <= 0.9 * 400


def test_profiles_cover_every_kind_and_the_long_one_has_twenty_faults() -> None:
    assert all(p.faults >= len(FAULT_KINDS) for p in PROFILES.values())
    assert PROFILES["long"].faults >= 20 and PROFILES["long"].records >= 1_000_000


def test_unknown_kind_and_negative_count_are_refused() -> None:
    with pytest.raises(ValueError):
        Fault(1.0, "disk-full")
    with pytest.raises(ValueError):
        schedule(1, -1, 10)

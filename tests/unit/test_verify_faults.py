"""The verifier's fault schedule: seeded, every kind once, inside the feeding time."""

from __future__ import annotations

import pytest

from onceflow.verify.faults import (
    FAULT_KINDS,
    POSTGRES_FAULT_KINDS,
    PROFILES,
    RESCALE_KIND,
    STALL_TARGETS,
    Fault,
    fault_count,
    fault_kinds,
    over_target,
    schedule,
)


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


def test_postgres_kinds_are_scheduled_only_for_targets_that_write_postgres() -> None:
    assert fault_kinds(writes_postgres=False) == FAULT_KINDS
    assert set(fault_kinds(writes_postgres=True)) == set(FAULT_KINDS) | set(POSTGRES_FAULT_KINDS)
    for seed in range(20):
        plain = schedule(seed, 24, 400, fault_kinds(False))
        assert not {f.kind for f in plain} & set(POSTGRES_FAULT_KINDS)
        # The default kinds are the plain ones: existing callers get no PostgreSQL fault.
        assert schedule(seed, 24, 400) == plain


def test_a_postgres_target_gets_every_kind_once_before_any_repeats() -> None:
    kinds = fault_kinds(writes_postgres=True)
    count = fault_count(PROFILES["ci"].faults, kinds)
    assert count == len(FAULT_KINDS) + len(POSTGRES_FAULT_KINDS)
    faults = schedule(seed=4, count=count, feed_seconds=40, kinds=kinds)
    assert sorted(f.kind for f in faults) == sorted(FAULT_KINDS + POSTGRES_FAULT_KINDS)
    times = [f.at_s for f in faults]
    assert times == sorted(times) and times[0] >= 0.1 * 40 and times[-1] <= 0.9 * 40


def test_fault_count_covers_every_kind_only_when_the_profile_covers_the_common_ones() -> None:
    kinds = fault_kinds(writes_postgres=True)
    assert fault_count(6, kinds) == 8  # a profile's promise: every kind at least once
    assert fault_count(24, kinds) == 24
    assert fault_count(2, kinds) == 2  # an explicit small count is kept
    assert fault_count(6, FAULT_KINDS) == 6


def test_postgres_kinds_are_known_and_unknown_kinds_are_refused_by_the_schedule() -> None:
    assert Fault(1.0, "postgres-kill").kind == "postgres-kill"
    assert Fault(1.0, "postgres-restart-prepared").kind == "postgres-restart-prepared"
    with pytest.raises(ValueError):
        schedule(1, 3, 10, ("tm-kill", "disk-full"))
    with pytest.raises(ValueError):
        schedule(1, 3, 10, ())


def test_rescale_is_scheduled_in_the_short_and_long_profiles_only() -> None:
    assert PROFILES["short"].rescale and PROFILES["long"].rescale
    assert not PROFILES["ci"].rescale  # make test: tests/it/test_rescale.py covers it
    kinds = fault_kinds(writes_postgres=False, rescale=True)
    assert kinds == (*FAULT_KINDS, RESCALE_KIND)
    count = fault_count(PROFILES["short"].faults, kinds)
    assert count == len(FAULT_KINDS) + 1  # the profile's promise: every kind once
    assert sorted(f.kind for f in schedule(2, count, 75, kinds)) == sorted(kinds)
    long = schedule(2, fault_count(PROFILES["long"].faults, kinds), 400, kinds)
    assert sum(f.kind == RESCALE_KIND for f in long) >= 3


def test_a_postgres_target_is_rescaled_too() -> None:
    # Its writers commit or roll back the old subtasks' transactions at any parallelism.
    kinds = fault_kinds(writes_postgres=True, rescale=True)
    assert RESCALE_KIND in kinds and "postgres-kill" in kinds


def _reading(t: float, hwm: dict[int, int], lso: dict[int, int]) -> dict[str, object]:
    # As a result JSON holds them: partition keys as strings.
    return {"t": t, "hwm": {str(p): o for p, o in hwm.items()},
            "lso": {str(p): o for p, o in lso.items()}}  # fmt: skip


def test_the_stall_ends_when_a_record_produced_after_the_fault_is_committed() -> None:
    from onceflow.verify.faults import stall_after

    samples = [
        _reading(1.0, {0: 100, 1: 50}, {0: 100, 1: 50}),
        _reading(2.0, {0: 120, 1: 60}, {0: 100, 1: 50}),
        {"t": 3.0},  # broker down: no reading
        # The first reading after the fault: what was appended by now is old output.
        _reading(4.0, {0: 121, 1: 60}, {0: 100, 1: 50}),
        # The restart aborts the old transactions: markers move the LSO, no data.
        _reading(5.0, {0: 123, 1: 62}, {0: 123, 1: 62}),
        _reading(6.0, {0: 140, 1: 70}, {0: 123, 1: 62}),
        _reading(7.0, {0: 141, 1: 71}, {0: 141, 1: 71}),  # the new transactions commit
    ]
    # Committed data: the old output before the fault, then the new after the markers.
    committed = [(0, o) for o in range(100, 120)] + [(1, o) for o in range(50, 60)]
    committed += [(0, o) for o in range(123, 140)] + [(1, o) for o in range(62, 70)]
    assert stall_after(3.5, samples, committed) == 3.5  # 7.0 - 3.5, not 5.0 - 3.5
    # The earlier measure ended at the markers; without new data there is no end.
    assert stall_after(3.5, samples, committed[:30]) is None
    assert stall_after(7.5, samples, committed) is None  # no reading after the fault


def test_a_resumed_jobs_stall_ends_on_its_own_output_not_the_stopped_jobs() -> None:
    from onceflow.verify.faults import stall_after

    samples = [
        _reading(1.0, {0: 100}, {0: 100}),
        _reading(2.0, {0: 110}, {0: 100}),  # the stop begins at 1.5: the old job still writes
        _reading(3.0, {0: 115}, {0: 115}),  # the savepoint commits the old job's last records
        _reading(4.0, {0: 116}, {0: 116}),  # the new job submitted at 3.5: a marker only
        _reading(5.0, {0: 130}, {0: 116}),
        _reading(6.0, {0: 131}, {0: 131}),  # the new job's first commit
    ]
    committed = [(0, o) for o in range(100, 115)] + [(0, o) for o in range(116, 130)]
    # From the fault's start alone, the stopped job's last records end the stall at once.
    assert stall_after(1.5, samples, committed) == 1.5
    assert stall_after(1.5, samples, committed, resumed_s=3.5) == 4.5  # 6.0 - 1.5


def test_stalls_are_summarised_per_kind_by_median_and_max() -> None:
    from onceflow.verify.faults import stalls_by_kind

    faults = [
        {"kind": "tm-kill", "stall_s": 14.0},
        {"kind": "tm-kill", "stall_s": 9.0},
        {"kind": "tm-kill", "stall_s": 30.0},
        {"kind": "rescale", "stall_s": 21.0},
        {"kind": "rescale", "stall_s": None},
    ]
    assert stalls_by_kind(faults) == {
        "rescale": {"count": 1, "p50": 21.0, "max": 21.0},
        "tm-kill": {"count": 3, "p50": 14.0, "max": 30.0},
    }


def test_kinds_whose_p50_stall_exceeds_the_target_are_named() -> None:
    stalls = {
        "tm-kill": {"count": 4, "p50": 6.5, "max": 9.0},
        "operator-exception": {"count": 4, "p50": 5.0, "max": 12.0},  # at the target: met
        "broker-kill": {"count": 3, "p50": 4.0, "max": 30.0},
        "rescale": {"count": 2, "p50": 99.0, "max": 99.0},  # no target
    }
    missed = over_target(stalls)
    assert len(missed) == 1 and missed[0].startswith("tm-kill: p50 6.5 s over the 6 s target")
    assert over_target(stalls, {**STALL_TARGETS, "tm-kill": 7.0}) == []
    assert set(STALL_TARGETS) == set(FAULT_KINDS)

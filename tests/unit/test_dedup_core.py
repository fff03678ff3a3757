"""Unit tests for operators.dedup.core: the dedup decision, horizon and simulation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.operators.dedup import DedupCore, DedupStats, simulate
from onceflow.operators.state import KeyedMemoryStore, MemoryValueStore

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "100"])
def test_invalid_ttl_raises(bad: object) -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        DedupCore(bad)  # type: ignore[arg-type]


def test_first_passes_and_records_first_seen() -> None:
    core = DedupCore(ttl_ms=None)
    store: MemoryValueStore[int] = MemoryValueStore()
    assert core.process(store, 1_000) is True
    assert store.get() == 1_000
    assert core.process(store, 2_000) is False
    assert store.get() == 1_000  # a duplicate leaves state alone


def test_without_ttl_duplicates_are_dropped_forever() -> None:
    core = DedupCore(ttl_ms=None)
    store: MemoryValueStore[int] = MemoryValueStore()
    assert core.process(store, 0)
    assert not any(core.process(store, t) for t in (1, 10**6, 10**12))


def test_ttl_boundary_and_reset() -> None:
    core = DedupCore(ttl_ms=100)
    store: MemoryValueStore[int] = MemoryValueStore()
    assert core.process(store, 1_000)
    assert not core.process(store, 1_099)  # 99 ms later: within the horizon
    assert core.process(store, 1_100)  # exactly ttl later: expired, passes again
    assert store.get() == 1_100  # and the horizon restarts from here
    assert not core.process(store, 1_199)
    assert core.process(store, 1_200)


def test_duplicates_do_not_extend_the_horizon() -> None:
    core = DedupCore(ttl_ms=100)
    store: MemoryValueStore[int] = MemoryValueStore()
    assert core.process(store, 0)
    assert not core.process(store, 60)
    assert not core.process(store, 99)
    assert core.process(store, 100)  # measured from first-seen (0), not from 99


def test_clock_going_backwards_counts_as_duplicate() -> None:
    core = DedupCore(ttl_ms=100)
    store: MemoryValueStore[int] = MemoryValueStore()
    assert core.process(store, 5_000)
    assert not core.process(store, 1_000)
    assert store.get() == 5_000


def test_keys_are_independent() -> None:
    core = DedupCore(ttl_ms=None)
    state: KeyedMemoryStore[int] = KeyedMemoryStore()
    assert core.process(state.for_key("s:a"), 1)
    assert core.process(state.for_key("s:b"), 2)
    assert not core.process(state.for_key("s:a"), 3)
    assert state.snapshot() == {"s:a": 1, "s:b": 2}
    assert len(state) == 2
    assert sorted(state) == ["s:a", "s:b"]


def test_simulate_and_stats() -> None:
    records = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4), ("a", 10), ("a", 11)]
    stats = DedupStats()
    assert simulate(records, ttl_ms=10, stats=stats) == [0, 1, 3, 5]
    assert stats == DedupStats(seen=7, passed=4, duplicates=3, rejected=0)
    stats.count_rejected()
    assert stats.consistent
    assert stats.as_dict() == {"seen": 8, "passed": 4, "duplicates": 3, "rejected": 1}
    assert simulate(records, ttl_ms=None) == [0, 1, 3]


def test_stats_merge_and_inconsistency() -> None:
    a = DedupStats(seen=3, passed=2, duplicates=1)
    b = DedupStats(seen=2, passed=1, rejected=1)
    assert a.merged(b) == DedupStats(seen=5, passed=3, duplicates=1, rejected=1)
    assert not DedupStats(seen=2, passed=1).consistent


# --- properties -------------------------------------------------------------------------------


def _oracle(records: list[tuple[str, int]], ttl_ms: int | None) -> list[int]:
    """Passed indexes, computed per key from the definition of the horizon.

    For each key, walk its occurrences in arrival order: the first one opens a
    horizon; an occurrence passes iff it is at least ttl_ms after the opening of
    the current horizon, and then opens a new one.
    """
    by_key: dict[str, list[int]] = {}
    for index, (key, _) in enumerate(records):
        by_key.setdefault(key, []).append(index)
    passed: list[int] = []
    for indexes in by_key.values():
        opened = records[indexes[0]][1]
        passed.append(indexes[0])
        for index in indexes[1:]:
            t = records[index][1]
            if ttl_ms is not None and t - opened >= ttl_ms:
                passed.append(index)
                opened = t
    return sorted(passed)


keys = st.sampled_from(["a", "b", "c", "d", "e"])


@st.composite
def monotone_records(draw: st.DrawFn) -> list[tuple[str, int]]:
    ids = draw(st.lists(keys, max_size=60))
    steps = draw(st.lists(st.integers(0, 40), min_size=len(ids), max_size=len(ids)))
    return list(zip(ids, itertools.accumulate(steps), strict=True))


@settings(max_examples=200, deadline=None)
@given(records=monotone_records(), ttl_ms=st.none() | st.integers(1, 200))
def test_passes_exactly_the_first_occurrences_within_the_horizon(
    records: list[tuple[str, int]], ttl_ms: int | None
) -> None:
    stats = DedupStats()
    passed = simulate(records, ttl_ms, stats=stats)
    assert passed == _oracle(records, ttl_ms)
    assert stats.consistent
    assert stats.passed == len(passed)
    assert stats.duplicates == len(records) - len(passed)
    if ttl_ms is None:
        first: dict[str, int] = {}
        for index, (key, _) in enumerate(records):
            first.setdefault(key, index)
        assert passed == sorted(first.values())
        assert [records[i][0] for i in passed] == list(dict.fromkeys(k for k, _ in records))
    else:
        # Within any horizon a key passes at most once, and every key passes at least once.
        last: dict[str, int] = {}
        for index in passed:
            key, t = records[index]
            assert key not in last or t - last[key] >= ttl_ms
            last[key] = t
        assert set(last) == {k for k, _ in records}


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(st.tuples(keys, st.integers(0, 500)), max_size=60),
    ttl_ms=st.none() | st.integers(1, 200),
)
def test_matches_oracle_with_an_unordered_clock(
    records: list[tuple[str, int]], ttl_ms: int | None
) -> None:
    assert simulate(records, ttl_ms) == _oracle(records, ttl_ms)

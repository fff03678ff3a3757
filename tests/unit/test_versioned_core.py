"""Unit tests for operators.versioned.core: parsing change events and versioned apply."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.operators.records import (
    BAD_OP,
    EMPTY_FIELD,
    INVALID_UNICODE,
    MISSING_FIELD,
    NULL_FIELD,
    OUT_OF_RANGE,
    WRONG_TYPE,
    Rejected,
)
from onceflow.operators.state import MemoryValueStore
from onceflow.operators.versioned import (
    APPLIED,
    COMPARE_AND_SET,
    CONFLICT,
    DELETE,
    NEWER_WINS,
    REPEAT,
    STALE,
    UPSERT,
    ChangeEvent,
    ChangeSchema,
    StateTuple,
    VersionedUpdateCore,
    VersionState,
    parse_change,
    payload_hash,
    simulate,
)

pytestmark = pytest.mark.unit


def up(key: str, version: int, payload: dict[str, Any], expected: int | None = None) -> ChangeEvent:
    return ChangeEvent(key, version, UPSERT, payload, expected)


def rm(key: str, version: int, expected: int | None = None) -> ChangeEvent:
    return ChangeEvent(key, version, DELETE, None, expected)


def kinds(events: list[ChangeEvent], mode: str, **kwargs: Any) -> list[str]:
    return [o.kind for o in simulate(events, mode, **kwargs).outcomes]


# --- parse_change -----------------------------------------------------------------------------


def test_parse_full_event() -> None:
    obj = {"key": "k", "version": 3, "op": "upsert", "payload": {"a": 1}, "expected_version": 2}
    assert parse_change(obj) == ChangeEvent("k", 3, UPSERT, {"a": 1}, 2)


def test_parse_defaults_and_int_key() -> None:
    assert parse_change({"key": 42, "version": 0, "payload": {}}) == ChangeEvent(
        "42", 0, UPSERT, {}, None
    )
    assert parse_change(
        {"key": "k", "version": 1, "op": None, "payload": {}, "expected_version": None}
    ) == (ChangeEvent("k", 1, UPSERT, {}, None))


def test_parse_delete_payload_is_optional() -> None:
    assert parse_change({"key": "k", "version": 5, "op": "delete"}) == rm("k", 5)
    assert parse_change({"key": "k", "version": 5, "op": "delete", "payload": None}) == rm("k", 5)
    with_before = parse_change({"key": "k", "version": 5, "op": "delete", "payload": {"a": 1}})
    assert with_before == ChangeEvent("k", 5, DELETE, {"a": 1})


def test_parse_with_a_custom_schema() -> None:
    schema = ChangeSchema(key="meta.id", version="meta.rev", op="kind", payload="after")
    obj = {"meta": {"id": "e1", "rev": 9}, "kind": "upsert", "after": {"x": 1}}
    assert parse_change(obj, schema) == ChangeEvent("e1", 9, UPSERT, {"x": 1})
    with pytest.raises(ValueError):
        ChangeSchema(key="")


BASE: dict[str, Any] = {"key": "k", "version": 1, "payload": {"a": 1}}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": None}, NULL_FIELD),
        ({"key": ""}, EMPTY_FIELD),
        ({"key": True}, WRONG_TYPE),
        ({"key": 1.5}, WRONG_TYPE),
        ({"key": ["k"]}, WRONG_TYPE),
        ({"version": None}, NULL_FIELD),
        ({"version": True}, WRONG_TYPE),
        ({"version": "1"}, WRONG_TYPE),
        ({"version": 1.0}, WRONG_TYPE),
        ({"version": -1}, OUT_OF_RANGE),
        ({"version": 2**63}, OUT_OF_RANGE),
        ({"op": "DELETE"}, BAD_OP),
        ({"op": "insert"}, BAD_OP),
        ({"op": 1}, WRONG_TYPE),
        ({"payload": None}, NULL_FIELD),
        ({"payload": [1]}, WRONG_TYPE),
        ({"payload": "x"}, WRONG_TYPE),
        ({"op": "delete", "payload": [1]}, WRONG_TYPE),
        ({"expected_version": False}, WRONG_TYPE),
        ({"expected_version": "0"}, WRONG_TYPE),
        ({"expected_version": -2}, OUT_OF_RANGE),
    ],
)
def test_parse_rejections(change: dict[str, Any], reason: str) -> None:
    result = parse_change({**BASE, **change})
    assert isinstance(result, Rejected)
    assert result.reason == reason, result


@pytest.mark.parametrize("field", ["key", "version", "payload"])
def test_parse_missing_required_fields(field: str) -> None:
    obj = {k: v for k, v in BASE.items() if k != field}
    result = parse_change(obj)
    assert isinstance(result, Rejected)
    assert result.reason == MISSING_FIELD


def test_max_version_is_accepted() -> None:
    event = parse_change({**BASE, "version": 2**63 - 1})
    assert isinstance(event, ChangeEvent)
    assert event.version == 2**63 - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "", "version": 1, "payload": {}},
        {"key": "k", "version": -1, "payload": {}},
        {"key": "k", "version": True, "payload": {}},
        {"key": "k", "version": 1, "op": "merge", "payload": {}},
        {"key": "k", "version": 1, "payload": None},
        {"key": "k", "version": 1, "op": DELETE, "payload": [1]},
        {"key": "k", "version": 1, "payload": {}, "expected_version": -1},
    ],
)
def test_change_event_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ChangeEvent(**kwargs)


# --- state ------------------------------------------------------------------------------------


def test_state_tuple_round_trip() -> None:
    state = VersionState(7, payload_hash({"a": 1}), False, 123)
    assert VersionState.from_tuple(state.to_tuple()) == state
    assert VersionState.from_tuple(list(state.to_tuple())) == state


@pytest.mark.parametrize(
    "value",
    [
        (),
        (1, "h", False),
        (1, "h", 0, 5),
        ("1", "h", False, 5),
        (1, "h", False, True),
        (-1, "h", False, 5),
    ],
)
def test_corrupt_state_raises(value: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="corrupt versioned state"):
        VersionState.from_tuple(value)


def test_payload_hash_is_order_independent() -> None:
    assert payload_hash({"a": 1, "b": 2}) == payload_hash({"b": 2, "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


# --- newer_wins -------------------------------------------------------------------------------


def test_newer_wins_basic_sequence() -> None:
    events = [
        up("k", 1, {"v": 1}),
        up("k", 3, {"v": 3}),
        up("k", 2, {"v": 2}),  # late
        up("k", 3, {"v": 3}),  # re-delivery
        up("k", 3, {"v": 33}),  # a second writer claims version 3
        up("k", 4, {"v": 4}),
    ]
    sim = simulate(events, NEWER_WINS)
    assert [o.kind for o in sim.outcomes] == [APPLIED, APPLIED, STALE, REPEAT, CONFLICT, APPLIED]
    assert [o.stored_version for o in sim.outcomes] == [None, 1, 3, 3, 3, 3]
    assert sim.final == {"k": VersionState(4, payload_hash({"v": 4}), False, 0)}
    assert sim.counts() == {APPLIED: 3, STALE: 1, CONFLICT: 1, REPEAT: 1}
    assert sim.applied() == [events[0], events[1], events[5]]


def test_newer_wins_ignores_expected_version() -> None:
    assert kinds([up("k", 1, {}, expected=9), up("k", 2, {}, expected=0)], NEWER_WINS) == [
        APPLIED,
        APPLIED,
    ]


def test_delete_leaves_a_tombstone_that_blocks_older_upserts() -> None:
    events = [up("k", 1, {"v": 1}), rm("k", 5), up("k", 4, {"v": 4}), rm("k", 5), up("k", 6, {})]
    sim = simulate(events, NEWER_WINS)
    assert [o.kind for o in sim.outcomes] == [APPLIED, APPLIED, STALE, REPEAT, APPLIED]
    assert sim.final["k"].version == 6
    assert not sim.final["k"].deleted


def test_delete_of_unknown_key_stores_a_tombstone() -> None:
    sim = simulate([rm("k", 2), up("k", 1, {})], NEWER_WINS)
    assert [o.kind for o in sim.outcomes] == [APPLIED, STALE]
    assert sim.final["k"] == VersionState(2, "tombstone", True, 0)


def test_delete_payload_is_not_compared_but_op_is() -> None:
    events = [ChangeEvent("k", 2, DELETE, {"before": 1}), rm("k", 2), up("k", 2, {})]
    assert kinds(events, NEWER_WINS) == [APPLIED, REPEAT, CONFLICT]


def test_only_applied_outcomes_write_state() -> None:
    core = VersionedUpdateCore(NEWER_WINS)
    store: MemoryValueStore[StateTuple] = MemoryValueStore()
    assert core.apply(store, up("k", 2, {"a": 1}), now_ms=10).kind == APPLIED
    before = store.get()
    for event in (up("k", 1, {}), up("k", 2, {"a": 1}), up("k", 2, {"a": 2})):
        core.apply(store, event, now_ms=99)
        assert store.get() == before
    assert before == (2, payload_hash({"a": 1}), False, 10)


# --- compare_and_set --------------------------------------------------------------------------


def test_cas_linear_history() -> None:
    events = [up("k", 1, {"v": 1}), up("k", 2, {"v": 2}, expected=1), rm("k", 3, expected=2)]
    sim = simulate(events, COMPARE_AND_SET)
    assert [o.kind for o in sim.outcomes] == [APPLIED, APPLIED, APPLIED]
    assert sim.final["k"] == VersionState(3, "tombstone", True, 0)


def test_cas_create_when_the_entity_exists_is_a_conflict() -> None:
    sim = simulate([up("k", 1, {"v": 1}), up("k", 2, {"v": 2})], COMPARE_AND_SET)
    second = sim.outcomes[1]
    assert second.kind == CONFLICT
    assert second.stored_version == 1
    assert "exists" in second.reason
    assert sim.final["k"].version == 1


def test_cas_expected_mismatch_is_a_conflict_with_stored_version() -> None:
    events = [up("k", 1, {}), up("k", 2, {}, expected=1), up("k", 3, {"x": 1}, expected=1)]
    sim = simulate(events, COMPARE_AND_SET)
    assert [o.kind for o in sim.outcomes] == [APPLIED, APPLIED, CONFLICT]
    assert sim.outcomes[2].stored_version == 2
    assert sim.final["k"].version == 2


def test_cas_expected_on_absent_entity_is_a_conflict() -> None:
    outcome = simulate([up("k", 3, {}, expected=2)], COMPARE_AND_SET).outcomes[0]
    assert outcome.kind == CONFLICT
    assert outcome.stored_version is None


def test_cas_retry_is_a_repeat_and_late_event_is_stale() -> None:
    create = up("k", 1, {"v": 1})
    update = up("k", 2, {"v": 2}, expected=1)
    events = [create, create, update, update, create]
    assert kinds(events, COMPARE_AND_SET) == [APPLIED, REPEAT, APPLIED, REPEAT, STALE]


def test_cas_same_version_other_content_is_a_conflict() -> None:
    events = [up("k", 1, {}), up("k", 2, {"a": 1}, expected=1), up("k", 2, {"a": 2}, expected=1)]
    assert kinds(events, COMPARE_AND_SET) == [APPLIED, APPLIED, CONFLICT]


def test_cas_after_a_tombstone() -> None:
    events = [up("k", 1, {}), rm("k", 2, expected=1), up("k", 1, {"old": 1}), up("k", 3, {})]
    assert kinds(events, COMPARE_AND_SET) == [APPLIED, APPLIED, STALE, APPLIED]
    recreate_from_tombstone = [up("k", 1, {}), rm("k", 2, expected=1), up("k", 3, {}, expected=2)]
    assert kinds(recreate_from_tombstone, COMPARE_AND_SET) == [APPLIED, APPLIED, APPLIED]


# --- TTL --------------------------------------------------------------------------------------


def test_ttl_expiry_treats_state_as_absent_and_can_resurrect() -> None:
    events = [up("k", 1, {}), rm("k", 5), up("k", 3, {"late": 1}), up("k", 4, {"later": 1})]
    sim = simulate(events, NEWER_WINS, ttl_ms=100, now_ms=[0, 10, 109, 110])
    # 109 - 10 < 100: the tombstone still blocks; at 110 it has expired and v4 resurrects.
    assert [o.kind for o in sim.outcomes] == [APPLIED, APPLIED, STALE, APPLIED]
    assert [o.expired for o in sim.outcomes] == [False, False, False, True]
    assert sim.outcomes[3].stored_version is None
    assert sim.final["k"] == VersionState(4, payload_hash({"later": 1}), False, 110)


def test_ttl_counts_from_the_last_applied_write_only() -> None:
    events = [up("k", 2, {}), up("k", 1, {}), up("k", 2, {}), up("k", 1, {})]
    # Stale and repeated events at 50 and 99 do not refresh the TTL started at 0.
    assert kinds(events, NEWER_WINS, ttl_ms=100, now_ms=[0, 50, 99, 100]) == [
        APPLIED,
        STALE,
        REPEAT,
        APPLIED,
    ]


def test_expired_state_is_cleared() -> None:
    core = VersionedUpdateCore(NEWER_WINS, ttl_ms=10)
    store: MemoryValueStore[StateTuple] = MemoryValueStore((5, "h", False, 0))
    outcome = core.apply(store, up("k", 1, {}), now_ms=10)
    assert outcome.kind == APPLIED
    assert outcome.expired
    assert store.get() == (1, payload_hash({}), False, 10)


@pytest.mark.parametrize(("mode", "ttl"), [("newest", None), (NEWER_WINS, 0), (NEWER_WINS, True)])
def test_invalid_core_config(mode: str, ttl: Any) -> None:
    with pytest.raises(ValueError):
        VersionedUpdateCore(mode, ttl)


def test_simulate_checks_time_length() -> None:
    with pytest.raises(ValueError, match="now_ms"):
        simulate([up("k", 1, {})], NEWER_WINS, now_ms=[])


# --- properties -------------------------------------------------------------------------------

KEYS = ["a", "b", "c"]


@st.composite
def unique_histories(
    draw: st.DrawFn,
) -> tuple[dict[tuple[str, int], ChangeEvent], list[ChangeEvent]]:
    """Events with one (op, payload) per (key, version), delivered in any order with repeats."""
    versions = draw(
        st.dictionaries(
            st.sampled_from(KEYS), st.sets(st.integers(0, 20), min_size=1, max_size=6), min_size=1
        )
    )
    truth: dict[tuple[str, int], ChangeEvent] = {}
    for key, vs in versions.items():
        for v in vs:
            if draw(st.booleans()) and draw(st.booleans()):
                truth[(key, v)] = rm(key, v)
            else:
                truth[(key, v)] = up(key, v, {"k": key, "v": v, "x": draw(st.integers(0, 3))})
    base = list(truth.values())
    extra = draw(st.lists(st.sampled_from(base), max_size=len(base) * 2))
    return truth, draw(st.permutations(base + extra))


@settings(max_examples=200, deadline=None)
@given(history=unique_histories())
def test_newer_wins_converges_to_the_highest_version(
    history: tuple[dict[tuple[str, int], ChangeEvent], list[ChangeEvent]],
) -> None:
    truth, arrivals = history
    sim = simulate(arrivals, NEWER_WINS)
    # Every input is accounted exactly once.
    assert len(sim.outcomes) == len(arrivals)
    assert [o.event for o in sim.outcomes] == arrivals
    counts = sim.counts()
    assert sum(counts.values()) == len(arrivals)
    assert counts[CONFLICT] == 0
    # Oracle: per key, the running maximum decides.
    expected = {APPLIED: 0, STALE: 0, CONFLICT: 0, REPEAT: 0}
    highest: dict[str, int] = {}
    for e in arrivals:
        top = highest.get(e.key)
        kind = APPLIED if top is None or e.version > top else REPEAT if e.version == top else STALE
        expected[kind] += 1
        highest[e.key] = e.version if top is None else max(top, e.version)
    assert counts == expected
    # Final state per key is the highest version's, whatever the order.
    assert set(sim.final) == {k for k, _ in truth}
    for key, state in sim.final.items():
        top_event = truth[(key, max(v for k, v in truth if k == key))]
        assert state.version == top_event.version
        assert state.deleted == (top_event.op == DELETE)
        assert state.payload_hash == top_event.content_hash


@st.composite
def conflicting_histories(draw: st.DrawFn) -> list[ChangeEvent]:
    """Events where one (key, version) may carry several different payloads or ops."""
    pool = [
        up(k, v, {"p": p}) if p < 3 else rm(k, v)
        for k in KEYS[:2]
        for v in range(4)
        for p in range(4)
    ]
    return draw(st.lists(st.sampled_from(pool), max_size=40))


@settings(max_examples=200, deadline=None)
@given(arrivals=conflicting_histories())
def test_newer_wins_conflicts_match_the_oracle(arrivals: list[ChangeEvent]) -> None:
    sim = simulate(arrivals, NEWER_WINS)
    expected = {APPLIED: 0, STALE: 0, CONFLICT: 0, REPEAT: 0}
    # Per key: (version, op, payload) of the last applied event; a delete's payload is moot.
    current: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
    for e in arrivals:
        content = (e.version, e.op, e.payload if e.op == UPSERT else None)
        seen = current.get(e.key)
        if seen is None or e.version > seen[0]:
            expected[APPLIED] += 1
            current[e.key] = content
        elif e.version < seen[0]:
            expected[STALE] += 1
        elif content == seen:
            expected[REPEAT] += 1
        else:
            expected[CONFLICT] += 1
    assert sim.counts() == expected
    for key, (version, op, _) in current.items():
        assert sim.final[key].version == version
        assert sim.final[key].deleted == (op == DELETE)


@settings(max_examples=200, deadline=None)
@given(
    delete_version=st.integers(1, 50),
    mode=st.sampled_from([NEWER_WINS, COMPARE_AND_SET]),
    late=st.lists(st.tuples(st.integers(0, 49), st.integers(0, 3)), max_size=10),
)
def test_a_delete_is_never_resurrected_by_an_older_upsert(
    delete_version: int, mode: str, late: list[tuple[int, int]]
) -> None:
    events = [up("k", 0, {"v": 0}), rm("k", delete_version, expected=0)]
    older = [up("k", v % delete_version, {"x": x}, expected=x) for v, x in late]
    sim = simulate(events + older, mode)
    assert [o.kind for o in sim.outcomes[:2]] == [APPLIED, APPLIED]
    assert all(o.kind in (STALE, CONFLICT) for o in sim.outcomes[2:])
    assert sim.final["k"] == VersionState(delete_version, "tombstone", True, 0)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 8),
    redeliveries=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=12),
)
def test_cas_in_order_history_with_redelivery_applies_each_version_once(
    length: int, redeliveries: list[tuple[int, int]]
) -> None:
    history = [up("k", 0, {"v": 0})] + [
        up("k", v, {"v": v}, expected=v - 1) for v in range(1, length)
    ]
    # Re-deliver event i again right after event j (j >= i): a retry or a late duplicate.
    arrivals: list[ChangeEvent] = []
    for j, event in enumerate(history):
        arrivals.append(event)
        arrivals.extend(
            history[i % length] for i, at in redeliveries if at % length == j and i % length <= j
        )
    sim = simulate(arrivals, COMPARE_AND_SET)
    counts = sim.counts()
    assert counts[CONFLICT] == 0
    assert counts[APPLIED] == length
    assert sum(counts.values()) == len(arrivals)
    assert sim.applied() == history
    assert sim.final["k"].version == length - 1


@pytest.mark.parametrize("key", ["\ud800", "k\udfff", "\udc00\ud800"])
def test_key_with_a_lone_surrogate_is_not_unicode(key: str) -> None:
    event = parse_change({"key": key, "version": 1, "payload": {}})
    assert isinstance(event, Rejected) and event.reason == INVALID_UNICODE
    ok = parse_change({"key": "\U0001f600", "version": 1, "payload": {"\ud800": "\udc00"}})
    assert not isinstance(ok, Rejected) and ok.key == "\U0001f600"

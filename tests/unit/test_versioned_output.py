"""Unit tests for operators.versioned.output and onceflow.testing.changes (generator and oracle)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceflow.operators.versioned.core import (
    COMPARE_AND_SET,
    CONFLICT,
    DELETE,
    NEWER_WINS,
    STALE,
    UPSERT,
    ChangeEvent,
    Outcome,
)
from onceflow.operators.versioned.output import (
    CHANGE_COLUMNS,
    applied_value,
    change_row,
    encoded_change,
    event_document,
    json_text,
    outcome_report,
)
from onceflow.testing.changes import (
    MALFORMED_KINDS,
    ChangeWorkloadSpec,
    expected_changes,
    generate_changes,
    report_identity,
)

pytestmark = pytest.mark.unit


# --- output encodings ---------------------------------------------------------------------------


def test_json_text_is_canonical_and_keeps_unicode() -> None:
    assert json_text({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_json_text_escapes_lone_surrogates_so_it_always_encodes() -> None:
    text = json_text({"a": "\ud800"})
    assert text == '{"a":"\\ud800"}'
    assert json.loads(text.encode("utf-8")) == {"a": "\ud800"}


def test_applied_value_is_payload_json_or_a_tombstone() -> None:
    assert applied_value(ChangeEvent("k", 2, UPSERT, {"z": 1, "a": [1]})) == b'{"a":[1],"z":1}'
    assert applied_value(ChangeEvent("k", 3, DELETE, {"before": 1})) is None


def test_outcome_report_carries_event_stored_version_reason_and_source() -> None:
    event = ChangeEvent("k", 2, UPSERT, {"a": 1}, expected_version=1)
    report = outcome_report(Outcome(STALE, event, 5, "version 2 is older than stored 5"), "t", 0, 9)
    doc = json.loads(report)
    assert doc == {
        "outcome": "stale",
        "reason": "version 2 is older than stored 5",
        "stored_version": 5,
        "expired": False,
        "event": {
            "key": "k",
            "version": 2,
            "op": "upsert",
            "payload": {"a": 1},
            "expected_version": 1,
        },
        "source": {"topic": "t", "partition": 0, "offset": 9},
    }
    assert report == outcome_report(Outcome(STALE, event, 5, doc["reason"]), "t", 0, 9)
    assert report_identity(report) == ("stale", "k", 2, "upsert", '{"a":1}', 1, 5)


_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
_payloads = st.recursive(
    st.one_of(_text, st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip


@given(
    key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
    op=st.sampled_from([UPSERT, DELETE]),
    payload=st.one_of(st.none(), st.dictionaries(_text, _payloads, max_size=3)),
)
def test_encoded_change_is_the_payload_text_hash_and_report_key_of_the_python_path(
    key: str, op: str, payload: dict[str, Any] | None
) -> None:
    """What the JVM path's decision is given equals what the Python path computes: the
    applied value's text, the content hash, and the key as the report spells it."""
    if op == UPSERT and payload is None:
        payload = {}
    event = ChangeEvent(key=key, version=1, op=op, payload=payload)
    text, content, key_json = encoded_change(event)
    assert text == (None if payload is None else json_text(payload))
    assert content == event.content_hash
    document = json_text(event_document(event))
    assert f'"key":{key_json},' in document
    payload_text = "null" if text is None else text
    assert document.endswith(f'"payload":{payload_text},"version":1}}')


def test_change_row_follows_the_declared_columns() -> None:
    event = ChangeEvent("k", 7, DELETE, None, expected_version=6)
    row = change_row(Outcome("applied", event, 6, "version 7 replaces 6"), "t", 1, 42, 1000)
    assert len(row) == len(CHANGE_COLUMNS)
    assert dict(zip([c[0] for c in CHANGE_COLUMNS], row, strict=True)) == {
        "key": "k",
        "version": 7,
        "op": "delete",
        "payload_json": None,
        "expected_version": 6,
        "replaced_version": 6,
        "source_topic": "t",
        "source_partition": 1,
        "source_offset": 42,
        "applied_ms": 1000,
    }


# --- generator and oracle -----------------------------------------------------------------------

SPEC = ChangeWorkloadSpec(changes=1500, keys=40, seed=5, shuffle_window=8)


def test_generator_is_deterministic_with_exact_counts() -> None:
    items = generate_changes(SPEC)
    assert items == generate_changes(SPEC)
    assert len(items) == SPEC.total
    kinds = Counter(it.kind for it in items)
    assert kinds == {
        "change": SPEC.changes,
        "duplicate": SPEC.duplicates,
        "conflict": SPEC.conflicts,
        "malformed": SPEC.malformed,
    }
    assert generate_changes(ChangeWorkloadSpec(changes=1500, keys=40, seed=6)) != items


def test_every_change_record_is_keyed_by_its_entity() -> None:
    for it in generate_changes(SPEC):
        if it.kind != "malformed":
            assert it.key == (it.entity or "").encode() == json.loads(it.value)["key"].encode()


@pytest.mark.parametrize("mode", [NEWER_WINS, COMPARE_AND_SET])
def test_oracle_accounts_for_every_record_and_exercises_every_outcome(mode: str) -> None:
    items = generate_changes(SPEC)
    oracle = expected_changes([it.value for it in items], mode)
    counts = Counter(oracle.kinds)
    assert sum(counts.values()) == len(items)
    assert counts["applied"] == len(oracle.applied) and counts["dlq"] == SPEC.malformed
    assert counts["stale"] == len(oracle.stale) and counts["conflict"] == len(oracle.conflicts)
    assert counts["repeat"] == oracle.repeats
    assert all(counts[k] > 0 for k in ("applied", "stale", "conflict", "repeat", "dlq")), counts
    assert None in oracle.final.values(), "some entity should end deleted (a tombstone)"
    assert oracle.applied_before(len(items)) == len(oracle.applied)
    # The oracle parses the bytes itself; it must agree with the generator's labels.
    labelled = [it.reason for it in items if it.kind == "malformed"]
    assert [reason for _, reason in oracle.dead_letters] == labelled
    assert {r for _, r in MALFORMED_KINDS} <= set(labelled)


def test_oracle_final_value_is_the_highest_applied_version_per_key() -> None:
    items = generate_changes(SPEC)
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    highest: dict[str, ChangeEvent] = {}
    for e in oracle.applied:
        assert e.key not in highest or e.version > highest[e.key].version, "applied out of order"
        highest[e.key] = e
    assert oracle.final == {k: applied_value(e) for k, e in highest.items()}


def test_conflicts_reuse_a_version_with_other_content() -> None:
    items = generate_changes(SPEC)
    oracle = expected_changes([it.value for it in items], NEWER_WINS)
    same_version = [o for o in oracle.conflicts if o.stored_version == o.event.version]
    assert same_version and all(o.kind == CONFLICT for o in same_version)

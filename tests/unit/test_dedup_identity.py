"""Unit tests for operators.dedup.identity: the identity a record is deduplicated by."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.operators.dedup import IdentitySpec, identity_of
from onceflow.operators.dedup.identity import jvm_key_matches
from onceflow.operators.records import (
    EMPTY_FIELD,
    INVALID_UNICODE,
    MISSING_FIELD,
    NULL_FIELD,
    WRONG_TYPE,
    Rejected,
)

pytestmark = pytest.mark.unit


def _reference_fingerprint(value: object) -> str:
    # Written out independently of operators.records so a change to the hash is caught.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "f:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --- spec validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"id_field": "id", "fingerprint": True},
        {"id_field": ""},
        {"id_field": "a..b"},
        {"fingerprint": True, "fingerprint_fields": ()},
        {"fingerprint": True, "fingerprint_fields": ("a", "")},
        {"fingerprint": True, "fingerprint_fields": ("a", "a")},
        {"fingerprint": True, "fingerprint_fields": ["a"]},
        {"id_field": "id", "fingerprint_fields": ("a",)},
    ],
)
def test_invalid_specs_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IdentitySpec(**kwargs)


def test_constructors() -> None:
    assert IdentitySpec.by_id("meta.msg_id") == IdentitySpec(id_field="meta.msg_id")
    assert IdentitySpec.by_fingerprint() == IdentitySpec(fingerprint=True)
    assert IdentitySpec.by_fingerprint(("a",)) == IdentitySpec(
        fingerprint=True, fingerprint_fields=("a",)
    )


# --- id field ---------------------------------------------------------------------------------


def test_id_is_type_tagged_so_string_and_int_do_not_collide() -> None:
    spec = IdentitySpec.by_id("id")
    assert identity_of({"id": "1"}, spec) == "s:1"
    assert identity_of({"id": 1}, spec) == "i:1"
    assert identity_of({"id": -5}, spec) == "i:-5"
    assert identity_of({"id": "i:1"}, spec) == "s:i:1"


def test_nested_id_field() -> None:
    spec = IdentitySpec.by_id("meta.msg_id")
    assert identity_of({"meta": {"msg_id": "m-7"}, "x": 1}, spec) == "s:m-7"
    missing = identity_of({"meta": "m-7"}, spec)
    assert isinstance(missing, Rejected)
    assert missing.reason == MISSING_FIELD


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({}, MISSING_FIELD),
        ({"id": None}, NULL_FIELD),
        ({"id": ""}, EMPTY_FIELD),
        ({"id": True}, WRONG_TYPE),
        ({"id": 1.0}, WRONG_TYPE),
        ({"id": ["a"]}, WRONG_TYPE),
        ({"id": {"a": 1}}, WRONG_TYPE),
    ],
)
def test_bad_ids_are_rejected(obj: dict[str, Any], reason: str) -> None:
    result = identity_of(obj, IdentitySpec.by_id("id"))
    assert isinstance(result, Rejected)
    assert result.reason == reason


# --- fingerprint ------------------------------------------------------------------------------


def test_whole_object_fingerprint_matches_the_reference() -> None:
    obj = {"b": [1, {"z": None}], "a": "é"}
    assert identity_of(obj, IdentitySpec.by_fingerprint()) == _reference_fingerprint(obj)
    assert identity_of(obj, IdentitySpec.by_fingerprint()) == (
        "f:" + hashlib.sha256('{"a":"é","b":[1,{"z":null}]}'.encode()).hexdigest()[:32]
    )


def test_fingerprint_distinguishes_content() -> None:
    spec = IdentitySpec.by_fingerprint()
    assert identity_of({"a": 1}, spec) != identity_of({"a": 2}, spec)
    assert identity_of({"a": 1}, spec) != identity_of({"a": "1"}, spec)
    assert identity_of({"a": None}, spec) != identity_of({}, spec)


def test_selected_fields_ignore_the_rest() -> None:
    spec = IdentitySpec.by_fingerprint(("user", "meta.seq"))
    a = identity_of({"user": "u", "meta": {"seq": 3, "ts": 1}, "noise": 1}, spec)
    b = identity_of({"noise": 2, "meta": {"ts": 9, "seq": 3}, "user": "u"}, spec)
    c = identity_of({"user": "u", "meta": {"seq": 4}}, spec)
    assert a == b == _reference_fingerprint({"meta.seq": 3, "user": "u"})
    assert a != c


def test_selected_field_missing_is_rejected_but_null_is_content() -> None:
    spec = IdentitySpec.by_fingerprint(("a", "b"))
    missing = identity_of({"a": 1}, spec)
    assert isinstance(missing, Rejected)
    assert missing.reason == MISSING_FIELD
    assert "'b'" in missing.detail
    assert identity_of({"a": 1, "b": None}, spec) == _reference_fingerprint({"a": 1, "b": None})


def test_fingerprint_of_lone_surrogate_does_not_raise() -> None:
    result = identity_of({"s": "\ud800"}, IdentitySpec.by_fingerprint())
    assert isinstance(result, str)
    assert result.startswith("f:")


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_objects = st.dictionaries(
    st.text(max_size=5),
    st.recursive(
        json_leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    ),
    max_size=6,
)


def _shuffled(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(obj=json_objects, seed=st.integers())
def test_fingerprint_ignores_member_order(obj: dict[str, Any], seed: int) -> None:
    spec = IdentitySpec.by_fingerprint()
    other = _shuffled(obj, random.Random(seed))
    assert identity_of(other, spec) == identity_of(obj, spec) == _reference_fingerprint(obj)


@pytest.mark.parametrize("ident", ["\ud800", "a\udc00b", "\udc00\ud800", "end\udbff"])
def test_id_with_a_lone_surrogate_is_not_unicode(ident: str) -> None:
    result = identity_of({"id": ident}, IdentitySpec.by_id("id"))
    assert isinstance(result, Rejected) and result.reason == INVALID_UNICODE
    assert identity_of({"id": "\U0001f600"}, IdentitySpec.by_id("id")) == "s:\U0001f600"


@pytest.mark.parametrize(
    ("flink_key", "identity", "matches"),
    [
        ('["a-1"]', "s:a-1", True),
        ("[42]", "i:42", True),
        ("[0]", "i:0", True),
        ('["42"]', "i:42", False),
        ("[42]", "s:42", False),
        ('["a\\u0000b"]', "s:a\x00b", True),
        ('["q\\"x"]', 's:q"x', True),
        ('["back\\\\slash"]', "s:back\\slash", True),
        ('["caf\u00e9 \U0001f600"]', "s:caf\u00e9 \U0001f600", True),
        ("[123456789012345678901234567890]", "i:123456789012345678901234567890", True),
        ('["a","b"]', 's:a","b', False),
        ('["a"]', 's:a"', False),
        ("", "s:a", False),
        ("[true]", "i:1", False),
        ("not json", "s:x", False),
        ('["a"]', "f:" + "0" * 32, False),
    ],
)
def test_jvm_key_matches_only_the_same_id_of_the_same_type(
    flink_key: str, identity: str, matches: bool
) -> None:
    assert jvm_key_matches(flink_key, identity) is matches


@settings(max_examples=300, deadline=None)
@given(ident=st.one_of(st.text(min_size=1), st.integers()))
def test_jvm_key_matches_the_json_rendering_of_every_id(ident: str | int) -> None:
    identity = identity_of({"id": ident}, IdentitySpec.by_id("id"))
    if isinstance(identity, Rejected):
        assert identity.reason == INVALID_UNICODE
        return
    for ensure_ascii in (True, False):
        assert jvm_key_matches(json.dumps([ident], ensure_ascii=ensure_ascii), identity)
    assert not jvm_key_matches(json.dumps([ident, 1]), identity)

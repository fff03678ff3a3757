"""Unit tests for operators.records: parsing, field validation, dead letters."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.operators.records import (
    DEAD_LETTER_TEXT_LIMIT,
    EMPTY_FIELD,
    INVALID_UNICODE,
    MISSING,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    NULL_FIELD,
    OVERSIZE,
    REASONS,
    TOO_DEEP,
    WRONG_TYPE,
    Parsed,
    Rejected,
    canonical_json,
    dead_letter,
    dead_letter_record,
    get_path,
    is_unicode,
    parse_dead_letter,
    parse_object,
    require_field,
    sql_json_path,
    sql_unicode_safe,
    stable_hash,
)

pytestmark = pytest.mark.unit

MAX = 1024

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


# --- parse_object ---------------------------------------------------------------------------


def test_parses_an_object_and_reports_its_size() -> None:
    raw = b'{"id": "a", "n": 1, "meta": {"x": [1, 2]}}'
    result = parse_object(raw, MAX)
    assert result == Parsed({"id": "a", "n": 1, "meta": {"x": [1, 2]}}, len(raw))


def test_null_value_is_not_json() -> None:
    assert parse_object(None, MAX) == Rejected(NOT_JSON, "null record value")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"{'a': 1}",
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',  # truncated UTF-8 sequence
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b"\xef\xbb\xbf{}",  # UTF-8 BOM
        b'{"a": 1} trailing',
    ],
)
def test_invalid_input_is_not_json(raw: bytes) -> None:
    result = parse_object(raw, MAX)
    assert isinstance(result, Rejected)
    assert result.reason == NOT_JSON, result


def test_huge_integer_literal_is_rejected_not_raised() -> None:
    # Python refuses int literals longer than 4300 digits with a ValueError.
    raw = b'{"n": ' + b"9" * 5000 + b"}"
    result = parse_object(raw, 10_000)
    assert isinstance(result, Rejected)
    assert result.reason == NOT_JSON


@pytest.mark.parametrize("raw", [b"[]", b"[1]", b'"s"', b"1", b"null", b"true"])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    result = parse_object(raw, MAX)
    assert isinstance(result, Rejected)
    assert result.reason == NOT_OBJECT


def test_oversize_is_checked_before_parsing() -> None:
    # Not JSON at all, yet the verdict is oversize: size is checked first.
    result = parse_object(b"\xff" * (MAX + 1), MAX)
    assert isinstance(result, Rejected)
    assert result.reason == OVERSIZE
    assert str(MAX + 1) in result.detail


def test_exactly_max_bytes_is_accepted() -> None:
    raw = b'{"a":"' + b"x" * (MAX - 8) + b'"}'
    assert len(raw) == MAX
    assert isinstance(parse_object(raw, MAX), Parsed)


def test_nesting_beyond_max_depth_is_too_deep() -> None:
    ok = b'{"a":' * 3 + b"1" + b"}" * 3
    assert isinstance(parse_object(ok, MAX, max_depth=3), Parsed)
    deep = b'{"a":' * 4 + b"1" + b"}" * 4
    result = parse_object(deep, MAX, max_depth=3)
    assert isinstance(result, Rejected)
    assert result.reason == TOO_DEEP


def test_nesting_beyond_the_recursion_limit_does_not_raise() -> None:
    n = 100_000
    result = parse_object(b"[" * n + b"]" * n, 10 * n)
    assert isinstance(result, Rejected)
    assert result.reason == TOO_DEEP


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_invalid_limits_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="positive int"):
        parse_object(b"{}", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive int"):
        parse_object(b"{}", MAX, max_depth=bad)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = parse_object(raw, 200)
    assert isinstance(result, Parsed | Rejected)
    if isinstance(result, Rejected):
        assert result.reason in REASONS
    else:
        assert result.size == len(raw)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_valid_json_parses_iff_it_is_an_object(value: object) -> None:
    raw = json.dumps(value).encode()
    result = parse_object(raw, 1_000_000)
    if isinstance(value, dict):
        assert result == Parsed(value, len(raw))
    else:
        assert isinstance(result, Rejected)
        assert result.reason == NOT_OBJECT


# --- get_path / require_field ----------------------------------------------------------------


def test_get_path_follows_dotted_paths() -> None:
    obj = {"meta": {"msg_id": "m1", "n": None}, "top": 1, "list": [{"a": 1}]}
    assert get_path(obj, "top") == 1
    assert get_path(obj, "meta.msg_id") == "m1"
    assert get_path(obj, "meta.n") is None
    assert get_path(obj, "meta.absent") is MISSING
    assert get_path(obj, "top.x") is MISSING  # intermediate is not an object
    assert get_path(obj, "list.a") is MISSING  # arrays are not indexed
    assert get_path(obj, "nope.x") is MISSING


@pytest.mark.parametrize("path", ["", ".", "a.", ".a", "a..b"])
def test_malformed_paths_raise(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        get_path({}, path)


@pytest.mark.parametrize(
    ("obj", "types", "reason"),
    [
        ({}, (str,), MISSING_FIELD),
        ({"f": None}, (str,), NULL_FIELD),
        ({"f": ""}, (str,), EMPTY_FIELD),
        ({"f": ""}, (int,), WRONG_TYPE),  # an empty string where a number is required
        ({"f": 1}, (str,), WRONG_TYPE),
        ({"f": True}, (int,), WRONG_TYPE),  # bool is not an int in JSON
        ({"f": False}, (str, int), WRONG_TYPE),
        ({"f": 1.0}, (int,), WRONG_TYPE),
        ({"f": 1}, (float,), WRONG_TYPE),
        ({"f": [1]}, (dict,), WRONG_TYPE),
    ],
)
def test_require_field_rejections(
    obj: dict[str, object], types: tuple[type, ...], reason: str
) -> None:
    result = require_field(obj, "f", types)
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert "'f'" in result.detail


def test_require_field_returns_the_value() -> None:
    obj = {"a": {"b": 7}, "s": "x", "t": True, "o": {}}
    assert require_field(obj, "a.b", (int,)) == 7
    assert require_field(obj, "s", (str, int)) == "x"
    assert require_field(obj, "t", (bool,)) is True
    assert require_field(obj, "o", (dict,)) == {}


def test_require_field_needs_types() -> None:
    with pytest.raises(ValueError, match="at least one"):
        require_field({"a": 1}, "a", ())


# --- canonical JSON -------------------------------------------------------------------------


def test_canonical_json_is_order_independent_and_compact() -> None:
    a = {"b": 1, "a": {"y": "é", "x": [1, 2]}}
    b = {"a": {"x": [1, 2], "y": "é"}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":[1,2],"y":"é"},"b":1}'.encode()
    assert stable_hash(a) == stable_hash(b)
    assert len(stable_hash(a)) == 32
    assert stable_hash({"n": 1}) != stable_hash({"n": 1.0})


def test_canonical_json_survives_lone_surrogates() -> None:
    parsed = parse_object(b'{"s": "\\ud800"}', MAX)
    assert isinstance(parsed, Parsed)
    assert canonical_json(parsed.value) == b'{"s":"\xed\xa0\x80"}'


# --- dead letters ----------------------------------------------------------------------------


def test_dead_letter_layout() -> None:
    raw = b'{"a": 1'
    value = dead_letter(raw, NOT_JSON, "invalid JSON", "in", 3, 42)
    doc = json.loads(value)
    assert doc == {
        "reason": NOT_JSON,
        "detail": "invalid JSON",
        "source": {"topic": "in", "partition": 3, "offset": 42},
        "original": '{"a": 1',
        "original_b64": base64.b64encode(raw).decode(),
    }
    assert dead_letter(raw, NOT_JSON, "invalid JSON", "in", 3, 42) == value  # deterministic


def test_dead_letter_of_non_utf8_has_no_text() -> None:
    raw = b"\xff\x00\xfe"
    doc = json.loads(dead_letter(raw, NOT_JSON, "x", "t", 0, 1))
    assert "original" not in doc
    assert base64.b64decode(doc["original_b64"]) == raw


def test_dead_letter_of_null_value() -> None:
    letter = parse_dead_letter(dead_letter(None, NOT_JSON, "null record value", "t", 0, 9))
    assert letter["original_bytes"] is None
    assert letter["original"] is None
    assert letter["source"] == {"topic": "t", "partition": 0, "offset": 9}


def test_dead_letter_without_text() -> None:
    doc = json.loads(dead_letter(b"{}", NOT_OBJECT, "x", "t", 0, 1, include_text=False))
    assert "original" not in doc
    assert doc["original_b64"] == "e30="


def test_dead_letter_with_a_surrogate_in_detail_is_still_utf8() -> None:
    value = dead_letter(b"x", NOT_JSON, "bad \ud800", "t", 0, 1)
    value.decode("utf-8")  # must not raise
    assert parse_dead_letter(value)["detail"] == "bad \ud800"


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), partition=st.integers(0, 1000), offset=st.integers(0, 2**62))
def test_dead_letter_round_trips_the_original_bytes(
    raw: bytes, partition: int, offset: int
) -> None:
    result = parse_object(raw, 200)
    reason, detail = (result.reason, result.detail) if isinstance(result, Rejected) else ("x", "y")
    value = dead_letter(raw, reason, detail, "topic", partition, offset)
    value.decode("utf-8")  # always valid UTF-8 JSON
    letter = parse_dead_letter(value)
    assert letter["original_bytes"] == raw
    assert letter["reason"] == reason
    assert letter["detail"] == detail
    assert letter["source"] == {"topic": "topic", "partition": partition, "offset": offset}
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    assert letter["original"] == text


@pytest.mark.parametrize(
    "value",
    [
        b"[]",
        b'{"reason": "x"}',
        b'{"reason": "x", "detail": "", "source": {}, "original_b64": null}',
        b'{"reason": "x", "detail": "", "source": {"topic": "t", "partition": 0, "offset": 1},'
        b' "original_b64": "***"}',
        b'{"reason": "x", "detail": "", "source": {"topic": "t", "partition": 0, "offset": 1},'
        b' "original_b64": "YQ==", "original": "b"}',
    ],
)
def test_parse_dead_letter_rejects_malformed(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_dead_letter(value)


@pytest.mark.parametrize(
    ("path", "sql"),
    [("id", "$.id"), ("meta.msg_id", "$.meta.msg_id"), ("a-b.c_1", "$.a-b.c_1")],
)
def test_sql_json_path_of_simple_dotted_paths(path: str, sql: str) -> None:
    assert sql_json_path(path) == sql


@pytest.mark.parametrize("path", ["it's", "a b", "x.$y", "naïve"])
def test_sql_json_path_refuses_names_needing_escapes(path: str) -> None:
    assert sql_json_path(path) is None


def test_dead_letter_record_keys_by_source_position_and_drops_text_of_large_inputs() -> None:
    why = Rejected(NOT_JSON, "boom")
    key, value = dead_letter_record(b"small", why, "in", 2, 9)
    assert key == "in/2/9"
    letter = parse_dead_letter(value)
    assert letter["original"] == "small" and letter["reason"] == NOT_JSON
    big = b"x" * (DEAD_LETTER_TEXT_LIMIT + 1)
    _, value = dead_letter_record(big, why, "in", 2, 10)
    letter = parse_dead_letter(value)
    assert letter["original"] is None and letter["original_bytes"] == big


def test_dead_letter_over_the_limit_keeps_a_prefix_and_says_so() -> None:
    raw = bytes(range(256)) * 4_000  # 1,024,000 bytes, not UTF-8
    key, value = dead_letter_record(raw, Rejected(OVERSIZE, "too big"), "in", 0, 5, 100_000)
    assert key == "in/0/5" and len(value) <= 100_000
    letter = parse_dead_letter(value)
    assert letter["truncated"] and letter["reason"] == OVERSIZE
    assert letter["original_size"] == len(raw)
    assert letter["original_sha256"] == hashlib.sha256(raw).hexdigest()
    prefix = letter["original_bytes"]
    assert prefix is not None and raw.startswith(prefix) and len(prefix) > 70_000
    assert letter["original"] is None
    assert dead_letter_record(raw, Rejected(OVERSIZE, "too big"), "in", 0, 5, 100_000)[1] == value


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=3_000), limit=st.integers(1024, 4_000))
def test_dead_letter_never_exceeds_its_limit_and_is_whole_when_it_fits(
    raw: bytes, limit: int
) -> None:
    value = dead_letter(raw, NOT_JSON, "d\ud800" * 30, "topic", 3, 2**40, max_bytes=limit)
    assert len(value) <= limit
    letter = parse_dead_letter(value)
    assert letter["original_size"] == len(raw)
    assert letter["original_sha256"] == hashlib.sha256(raw).hexdigest()
    whole = dead_letter(raw, NOT_JSON, "d\ud800" * 30, "topic", 3, 2**40)
    if len(whole) <= limit:
        assert value == whole and not letter["truncated"]
    else:
        assert letter["truncated"] and raw.startswith(letter["original_bytes"] or b"")


def test_dead_letter_limit_must_leave_room_for_the_reason() -> None:
    with pytest.raises(ValueError, match="at least"):
        dead_letter(b"x", NOT_JSON, "d", "t", 0, 1, max_bytes=100)


def test_truncated_dead_letter_without_digest_is_malformed() -> None:
    doc = json.loads(dead_letter(b"x" * 5_000, OVERSIZE, "d", "t", 0, 1, max_bytes=2_000))
    del doc["original_sha256"]
    with pytest.raises(ValueError, match="original_sha256"):
        parse_dead_letter(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("plain", True),
        ("\U0001f600", True),
        ("\ufffd", True),
        ("a\ud800", False),
        ("\udc00", False),
    ],
)
def test_is_unicode_refuses_lone_surrogates_only(text: str, ok: bool) -> None:
    assert is_unicode(text) is bool(ok)


def test_sql_unicode_safe_wraps_the_expression_in_a_regexp_replace() -> None:
    assert sql_unicode_safe("k") == "REGEXP_REPLACE(k, '[\\x{D800}-\\x{DFFF}]', '\ufffd')"
    assert INVALID_UNICODE in REASONS

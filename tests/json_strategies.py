"""Hypothesis strategies of raw JSON record values for the dedup paths' differential tests.

Records identified by ``id`` (and change events for the versioned paths:
:func:`change_events`): lone surrogates and every other code point (escaped
or raw), duplicate ``id`` members, ids of every type, integers far past a long,
floats with exponents, deep nesting, escapes in member names, plain valid records,
and random or mutated bytes (flipped, cut, a BOM, trailing garbage).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

__all__ = ["change_events", "drawn", "mutated", "record", "records", "valid_record"]

# Text with every kind of code point, lone surrogates included (json.dumps escapes them).
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
_names = st.one_of(_text, st.sampled_from(["id", "Id", "id ", "meta", "x"]))
_scalar = st.one_of(
    _text,
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -0, 1, 10**400, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e400", "-1E400", "1.0", "1E3", "-0", "0.5e-400", "123456789e300"]).map(
        lambda t: _Raw(t)
    ),
    st.booleans(),
    st.none(),
)


class _Raw:
    """A JSON number written as is (json.dumps cannot spell 1e400 or -0)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(_dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        return _object(list(value.items()), ascii_only)
    return json.dumps(value, ensure_ascii=ascii_only)


def _object(members: list[tuple[str, Any]], ascii_only: bool) -> str:
    """A JSON object's text with ``members`` in order, repeated names kept."""
    items = (f"{json.dumps(k, ensure_ascii=ascii_only)}:{_dump(v, ascii_only)}" for k, v in members)
    return "{" + ",".join(items) + "}"


_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def record(draw: st.DrawFn) -> bytes:
    """A JSON object as text with ``id`` possibly repeated, missing, nested or of any type."""
    members: list[tuple[str, Any]] = draw(st.lists(st.tuples(_names, _json), max_size=3))
    for _ in range(draw(st.integers(0, 2))):
        members.insert(draw(st.integers(0, len(members))), ("id", draw(st.one_of(_json, _text))))
    if draw(st.booleans()):
        depth = draw(st.integers(95, 102))
        members.append(("deep", _Raw("[" * depth + "]" * depth)))
    ascii_only = draw(st.booleans())
    text = _object(members, ascii_only)
    if draw(st.booleans()):
        text = text.replace('"id"', '"\\u0069d"', 1)  # an escaped member name
    return text.encode("utf-8", "surrogatepass")


@st.composite
def valid_record(draw: st.DrawFn) -> bytes:
    """A plain valid record: one id, Unicode text or an integer, and a payload."""
    ident = draw(
        st.one_of(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
            st.integers(min_value=-(10**30), max_value=10**30),
        )
    )
    doc = {
        "id": ident,
        "payload": draw(st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)),
    }
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8")


def mutated(data: st.DataObject, raw: bytes) -> bytes:
    """``raw`` flipped, cut, prefixed with a BOM or followed by garbage."""
    how = data.draw(st.sampled_from(["flip", "cut", "bom", "garbage"]))
    if how == "flip" and raw:
        at = data.draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1 :]
    if how == "cut":
        return raw[: data.draw(st.integers(0, len(raw)))]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    return raw + data.draw(st.binary(min_size=1, max_size=4))


@st.composite
def records(draw: st.DrawFn, size: int) -> list[bytes]:
    """``size`` records: a third hostile documents, a third valid, the rest mutated or random."""
    third = size // 3
    out = draw(st.lists(record(), min_size=third, max_size=third))
    valid = draw(st.lists(valid_record(), min_size=third, max_size=third))
    out += valid
    data = draw(st.data())
    rest = size - len(out)
    out += [mutated(data, raw) for raw in valid[: rest // 2]]
    out += draw(
        st.lists(st.binary(max_size=24), min_size=rest - rest // 2, max_size=rest - rest // 2)
    )
    return out


# Change events: few keys and small versions, so that stale, conflicting and repeated
# changes are common; every field also of the wrong type, absent, null or repeated.
_keys = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
    st.integers(min_value=-(10**20), max_value=10**20),
)
_versions = st.one_of(
    st.integers(min_value=0, max_value=6),
    st.sampled_from([-1, 2**63 - 1, 2**63, True, "3", None]),
    _json,
)
_ops = st.sampled_from(["upsert", "upsert", "delete", None, "UPSERT", 1, "merge"])
_payloads = st.one_of(
    st.dictionaries(_names, _json, max_size=3),
    st.dictionaries(_names, _json, max_size=3),
    _json,
)


@st.composite
def change_event(draw: st.DrawFn, keys: list[Any]) -> bytes:
    """A versioned change event as text: ``key`` (mostly one of ``keys``), ``version``,
    ``op``, ``payload``, ``expected_version``, each possibly absent, of another type,
    or repeated (duplicate members)."""
    known = st.sampled_from(keys)
    members: list[tuple[str, Any]] = []
    if draw(st.integers(0, 9)):
        members.append(("key", draw(st.one_of(known, known, known, _keys, _json))))
    if draw(st.integers(0, 9)):
        members.append(("version", draw(_versions)))
    if draw(st.booleans()):
        members.append(("op", draw(_ops)))
    if draw(st.integers(0, 9)):
        members.append(("payload", draw(_payloads)))
    if draw(st.booleans()):
        members.append(("expected_version", draw(st.one_of(st.integers(0, 6), st.none(), _json))))
    if not draw(st.integers(0, 14)):
        at = draw(st.integers(0, len(members)))
        members.insert(at, (draw(st.sampled_from(["key", "version"])), draw(_keys)))
    ascii_only = draw(st.booleans())
    text = _object(members, ascii_only)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def change_events(draw: st.DrawFn, size: int) -> list[bytes]:
    """``size`` change events over a handful of keys, then a third of them again
    (re-deliveries: repeats, or stale once a newer version applied)."""
    keys = draw(st.lists(_keys, min_size=2, max_size=5))
    events = draw(st.lists(change_event(keys), min_size=size, max_size=size))
    return events + events[::3]


def drawn(strategy: st.SearchStrategy[Any], examples: int, at: int) -> list[Any]:
    """``examples`` values of ``strategy``, drawn with the seed ``at``.

    For tests where one example is one Flink job: Hypothesis's first example is its
    simplest (``{"key": ""}`` over and over), so a test with ``max_examples=1`` checks
    almost nothing. Draw many examples here, cheaply, and run one job over them all;
    a failure names ``at``, which draws the same values again.
    """
    found: list[Any] = []

    @seed(at)
    @settings(
        max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found

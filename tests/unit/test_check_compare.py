"""Unit tests for the pure half of onceflow.testing.check: multiset comparison of output and DLQ."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.testing.check import CheckReport, check_output, compare, compare_dead_letters
from onceflow.testing.drain import ConsumedRecord
from onceflow.testing.workload import WorkloadSpec, generate

pytestmark = pytest.mark.unit


def rec(value: bytes | None, offset: int = 0, partition: int = 0) -> ConsumedRecord:
    return ConsumedRecord("out", partition, offset, 0, None, value)


def dead_letter(original: bytes | None, **extra: object) -> bytes:
    b64 = None if original is None else base64.b64encode(original).decode()
    return json.dumps({"reason": "not_json", "original_b64": b64, **extra}).encode()


def figures(r: CheckReport) -> tuple[int, ...]:
    return (r.expected, r.seen, r.unique, r.duplicated, r.missing, r.unexpected, r.invalid)


def test_exact_match_is_ok() -> None:
    r = compare(["a", "b", "c"], ["c", "a", "b"])
    assert r.ok
    assert figures(r) == (3, 3, 3, 0, 0, 0, 0)
    assert "OK" in r.render() and "\n" not in r.render()


def test_duplicates_are_counted_as_extra_copies() -> None:
    r = compare(["a", "b", "c"], ["a", "b", "b", "c", "c", "c"])
    assert not r.ok
    assert figures(r) == (3, 6, 3, 3, 0, 0, 0)
    assert r.duplicated_examples == ("b x2", "c x3")


def test_missing_ids_are_found_in_expected_order() -> None:
    r = compare(["a", "b", "c", "d"], ["c"])
    assert not r.ok
    assert (r.missing, r.duplicated, r.unexpected) == (3, 0, 0)
    assert r.missing_examples == ("a", "b", "d")


def test_unexpected_ids_and_their_copies() -> None:
    r = compare(["a"], ["a", "x", "x", "y"])
    assert not r.ok
    assert figures(r) == (1, 4, 3, 1, 0, 2, 0)
    assert r.unexpected_examples == ("x x2", "y")


def test_everything_at_once_and_render() -> None:
    r = compare(["a", "b", "c"], ["a", "a", "z"])
    assert (r.duplicated, r.missing, r.unexpected) == (1, 2, 1)
    text = r.render()
    assert "FAILED" in text
    for word in ("duplicated:", "missing:", "unexpected:", "a x2", "z"):
        assert word in text
    doc = json.loads(r.to_json())
    assert doc["ok"] is False and doc["missing_examples"] == ["b", "c"]


def test_examples_are_capped() -> None:
    r = compare([str(i) for i in range(100)], [])
    assert r.missing == 100 and len(r.missing_examples) == 5


ids = st.lists(st.sampled_from("abcdefgh"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(expected=ids, seen=ids)
def test_invariants(expected: list[str], seen: list[str]) -> None:
    r = compare(expected, seen)
    assert r.seen == (r.expected - r.missing) + r.duplicated + r.unexpected
    assert r.unique == len(set(seen))
    assert r.ok == (sorted(expected) == sorted(seen))


def test_check_output_sorts_records_without_a_valid_id_as_invalid() -> None:
    spec = WorkloadSpec(2_000, 0.2, 0.05, seed=9, oversize_bytes=3_000, oversize_every=10)
    items = list(generate(spec))
    records = [rec(i.value, n) for n, i in enumerate(items)]
    expected = [i.ident for i in items if i.kind == "unique"]
    r = check_output([e for e in expected if e], records)
    assert (spec.uniques, spec.duplicates, spec.malformed, spec.oversize) == (1500, 400, 100, 10)
    # Raw input, nothing deduplicated: every duplicate shows, oversize records
    # carry an id nobody expects, the other malformed records carry none.
    assert figures(r) == (1500, 2000, 1510, 400, 0, 10, 90)
    assert all(e.startswith("oversize-") for e in r.unexpected_examples)
    assert "invalid:" in r.render()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "not_json"),
        (b"\xff{", "not_json"),
        (b"[1]", "not_object"),
        (b'{"x":1}', "missing_field"),
        (b'{"id":null}', "null_field"),
        (b'{"id":""}', "empty_field"),
        (b'{"id":1}', "wrong_type"),
        (b'{"id":true}', "wrong_type"),
    ],
)
def test_check_output_invalid_reasons(value: bytes | None, why: str) -> None:
    r = check_output([], [rec(value, 7, 2)])
    assert figures(r) == (0, 1, 0, 0, 0, 0, 1)
    assert r.invalid_examples[0].startswith(f"2@7 {why}")


def test_check_output_nested_id_field() -> None:
    records = [rec(b'{"meta":{"k":"a"}}'), rec(b'{"meta":{"k":"a"}}'), rec(b'{"meta":"a"}')]
    r = check_output(["a"], records, id_field="meta.k")
    assert figures(r) == (1, 3, 1, 1, 0, 0, 1)


def test_dead_letters_exact_match() -> None:
    originals = [b"{not json", b"\xff\xfe", b"[1,2]", b"[1,2]"]  # a multiset
    dlq = [rec(dead_letter(v), n) for n, v in enumerate(reversed(originals))]
    r = compare_dead_letters(originals, dlq)
    assert r.ok and r.name == "dead letters"
    assert figures(r) == (4, 4, 3, 0, 0, 0, 0)


def test_dead_letters_anomalies() -> None:
    originals = [b"{not json", b"\xff\xfe", b"[1,2]", b"[1,2]"]
    dlq: list[ConsumedRecord | bytes] = [
        dead_letter(b"{not json"),
        dead_letter(b"{not json"),  # duplicated
        dead_letter(b"[1,2]"),  # one of two copies missing; \xff\xfe missing entirely
        dead_letter(b"surprise"),  # unexpected
        dead_letter(None),  # a null original: unexpected here
        b"garbage",  # invalid
        b'{"reason":"x"}',  # invalid: no original_b64
        json.dumps({"original_b64": "%%%"}).encode(),  # invalid: not base64
    ]
    r = compare_dead_letters(originals, dlq)
    assert not r.ok
    assert figures(r) == (4, 8, 4, 1, 2, 2, 3)
    assert r.duplicated_examples == ("b'{not json' (9 bytes) x2",)
    assert r.missing_examples == ("b'\\xff\\xfe' (2 bytes)", "b'[1,2]' (5 bytes)")
    assert r.unexpected_examples == ("b'surprise' (8 bytes)", "null value")
    assert len(r.invalid_examples) == 3


def test_dead_letters_against_the_jobs_format() -> None:
    from onceflow.operators.records import dead_letter as job_dead_letter

    originals = [b"\xff\x00 not utf-8", b'{"id":null}']
    dlq = [job_dead_letter(v, "not_json", "d", "in", 0, n) for n, v in enumerate(originals)]
    assert compare_dead_letters(originals, dlq).ok


def test_truncated_dead_letters_match_their_originals_by_digest() -> None:
    from onceflow.operators.records import dead_letter as job_dead_letter

    big = bytes(range(256)) * 40
    letters = [job_dead_letter(big, "oversize", "d", "in", 0, 1, max_bytes=2_000)]
    assert len(letters[0]) <= 2_000
    assert compare_dead_letters([big], letters).ok
    assert not compare_dead_letters([big + b"x"], letters).ok
    forged = json.loads(letters[0])
    forged["original_sha256"] = "not hex"
    r = compare_dead_letters([big], [json.dumps(forged).encode()])
    assert r.invalid == 1


def test_long_values_are_shortened_in_examples() -> None:
    r = compare_dead_letters([b"x" * 5_000], [])
    assert r.missing_examples[0].endswith("... (5000 bytes)")
    assert len(r.missing_examples[0]) < 100

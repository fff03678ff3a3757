"""Unit tests for onceflow.testing.workload: exact counts, determinism, duplicates, malformed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow.testing.workload import (
    DEFAULT_DUPLICATE_WINDOW,
    MALFORMED_REASONS,
    Expectation,
    WorkItem,
    WorkloadSpec,
    expectation_for,
    generate,
    valid_id,
)

pytestmark = pytest.mark.unit

# Small oversize records keep the tests fast; the default (1 MB) is covered once.
SMALL = {"oversize_bytes": 5_000, "oversize_every": 10}


def spec(
    count: int = 2_000, dup: float = 0.3, bad: float = 0.05, seed: int = 1, **kw
) -> WorkloadSpec:
    return WorkloadSpec(count, dup, bad, seed, **{**SMALL, **kw})


def kinds(items: list[WorkItem]) -> Counter[str]:
    return Counter(i.kind for i in items)


def decode_id(value: bytes, path: str = "id") -> object:
    node: object = json.loads(value)
    for part in path.split("."):
        assert isinstance(node, dict)
        node = node[part]
    return node


@pytest.mark.parametrize(
    ("count", "dup", "bad"),
    [
        (2_000, 0.3, 0.05),
        (7, 0.5, 0.0),
        (10, 0.25, 0.25),
        (1, 0.0, 0.0),
        (0, 0.3, 0.01),
        (1_001, 0.0, 1.0),
        (333, 0.99, 0.0),
    ],
)
def test_counts_are_exact(count: int, dup: float, bad: float) -> None:
    s = spec(count, dup, bad)
    items = list(generate(s))
    c = kinds(items)
    assert len(items) == count
    assert c["malformed"] == round(count * bad) == s.malformed
    assert c["duplicate"] == round(count * dup) == s.duplicates
    assert c["unique"] == count - s.malformed - s.duplicates == s.uniques


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 400),
    dup=st.floats(0, 1),
    bad=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_counts_are_exact_for_any_valid_spec(count: int, dup: float, bad: float, seed: int) -> None:
    try:
        s = spec(count, dup, bad, seed)
    except ValueError:
        return  # ratios that do not fit: refused at construction (tested below)
    exp = expectation_for(s)
    assert (len(exp.unique_ids), exp.duplicates, exp.malformed) == (
        s.uniques,
        s.duplicates,
        s.malformed,
    )
    assert exp.total == count
    assert len(set(exp.unique_ids)) == len(exp.unique_ids)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = [(i.value, i.kind) for i in generate(spec(seed=42))]
    b = [(i.value, i.kind) for i in generate(spec(seed=42))]
    c = [(i.value, i.kind) for i in generate(spec(seed=43))]
    assert a == b
    assert a != c
    assert [k for _, k in a] != [k for _, k in c]  # the interleaving depends on the seed too


def test_duplicates_repeat_an_earlier_unique_record_byte_for_byte() -> None:
    seen: dict[str, bytes] = {}
    order: list[str] = []
    first_unique = None
    for pos, item in enumerate(generate(spec(5_000, 0.4, 0.05))):
        if item.kind == "unique":
            assert item.ident is not None and item.ident not in seen
            seen[item.ident] = item.value
            order.append(item.ident)
            first_unique = pos if first_unique is None else first_unique
        elif item.kind == "duplicate":
            assert first_unique is not None and pos > first_unique
            assert item.ident in seen, "a duplicate must refer to an id seen before"
            assert item.value == seen[item.ident]
        else:
            assert item.ident is None and item.malformed_reason in MALFORMED_REASONS
    assert order == [f"m-{n:08d}" for n in range(1, len(order) + 1)]


def test_duplicates_stay_within_the_recent_window() -> None:
    window = 25
    n_unique = 0
    for item in generate(spec(5_000, 0.5, 0.0, keys=window)):
        if item.kind == "unique":
            n_unique += 1
        elif item.kind == "duplicate":
            assert item.ident is not None
            assert int(item.ident[2:]) > n_unique - window, (item.ident, n_unique)
    assert spec().duplicate_window == DEFAULT_DUPLICATE_WINDOW


def test_valid_records_have_the_documented_shape_and_size() -> None:
    s = spec(payload_bytes=300)
    for item in generate(s):
        if item.kind == "malformed":
            continue
        obj = json.loads(item.value)
        assert set(obj) == {"id", "seq", "ts", "payload"}
        assert obj["id"] == item.ident and valid_id(obj["id"])
        assert isinstance(obj["seq"], int) and obj["ts"] == obj["seq"] * 10
        assert len(item.value) == 300


def test_malformed_records_are_malformed_for_the_reason_given() -> None:
    s = spec(3_000, 0.2, 0.1)
    reasons: Counter[str] = Counter()
    for item in generate(s):
        if item.kind != "malformed":
            continue
        reason = item.malformed_reason
        assert reason is not None
        reasons[reason] += 1
        if reason == "oversize":
            assert len(item.value) > s.oversize_bytes
            assert valid_id(json.loads(item.value)["id"])  # only the size is wrong
            continue
        assert len(item.value) < s.oversize_bytes
        if reason == "not_json":
            with pytest.raises(ValueError):  # UnicodeDecodeError is a ValueError too
                json.loads(item.value)
            continue
        obj = json.loads(item.value)
        if reason == "not_object":
            assert not isinstance(obj, dict)
            continue
        assert isinstance(obj, dict)
        expected = {
            "missing_field": lambda o: "id" not in o,
            "null_field": lambda o: "id" in o and o["id"] is None,
            "empty_field": lambda o: o.get("id") == "",
            "wrong_type": lambda o: o.get("id") is not None and not isinstance(o["id"], str),
        }[reason]
        assert expected(obj), (reason, item.value)
    assert set(reasons) == set(MALFORMED_REASONS)
    assert reasons["oversize"] == s.oversize == 30  # one in `oversize_every` (10)


def test_not_json_includes_invalid_utf8() -> None:
    values = [i.value for i in generate(spec(3_000, 0.0, 0.2)) if i.malformed_reason == "not_json"]
    assert any(not _is_utf8(v) for v in values)
    assert any(v.startswith(b"{not json") for v in values)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_reasons_match_the_jobs_rejection_reasons() -> None:
    from onceflow.operators.records import REASONS

    assert set(MALFORMED_REASONS) <= set(REASONS)


def test_default_oversize_record_exceeds_the_dedup_limit_and_is_rare() -> None:
    from onceflow.jobs.dedup import DedupConfig

    s = WorkloadSpec(1_000, 0.0, 0.1, seed=3)  # 100 malformed -> one oversize by default
    big = [i.value for i in generate(s) if i.malformed_reason == "oversize"]
    assert s.oversize == len(big) == 1
    assert DedupConfig.max_record_bytes < 600_000 < len(big[0]) <= 600_100
    assert WorkloadSpec(1_000, 0.0, 0.1, seed=3, oversize_every=0).oversize == 0


def test_nested_id_field() -> None:
    s = spec(500, 0.2, 0.1, id_field="meta.msg_id")
    for item in generate(s):
        if item.kind != "malformed":
            assert decode_id(item.value, "meta.msg_id") == item.ident
        elif item.malformed_reason == "null_field":
            assert json.loads(item.value)["meta"] == {"msg_id": None}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": -1},
        {"duplicate_ratio": 1.5},
        {"malformed_ratio": -0.1},
        {"duplicate_ratio": 0.6, "malformed_ratio": 0.6},
        {"duplicate_ratio": 0.5, "malformed_ratio": 0.5},  # duplicates of nothing
        {"id_field": ""},
        {"id_field": "a..b"},
        {"keys": 0},
    ],
)
def test_invalid_specs_are_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "count": 10,
        "duplicate_ratio": 0.1,
        "malformed_ratio": 0.1,
        "seed": 0,
    }
    with pytest.raises(ValueError):
        WorkloadSpec(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["exp.json", "exp.json.gz"])
def test_expectation_round_trips(tmp_path: Path, name: str) -> None:
    s = spec(1_000, 0.3, 0.1)
    exp = expectation_for(s)
    assert exp.malformed_values and any(not _is_utf8(v) for v in exp.malformed_values)
    path = exp.save(tmp_path / "sub" / name)
    back = Expectation.load(path)
    assert back == exp
    assert back.spec == s.to_dict() and WorkloadSpec(**back.spec) == s
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left


def test_loading_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"unique_ids": []}')
    with pytest.raises(ValueError, match="not an onceflow expectation"):
        Expectation.load(path)


def test_generation_is_lazy() -> None:
    it = generate(WorkloadSpec(10**9, 0.3, 0.01, seed=0))
    assert [next(it).kind for _ in range(3)]

"""The operators on a user's own streams, on the mini-cluster: Rows keyed in the JVM,
dicts keyed in Python, each result on its own typed stream."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import cloudpickle
import pytest

import onceflow
from onceflow.errors import OnceflowError

# The functions below run in Flink's Python workers, which cannot import tests/.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def env() -> Any:
    return onceflow.environment(parallelism=2, checkpoint_interval_ms=0)


def _collect(env: Any, **streams: Any) -> Counter[tuple[str, str]]:
    """Every record of each named stream, as (name, text), from one run of ``env``'s job."""
    from pyflink.common import Types

    tagged = [
        stream.map(lambda r, n=name: json.dumps([n, _plain(r)]), output_type=Types.STRING())
        for name, stream in streams.items()
    ]
    union = tagged[0].union(*tagged[1:]) if len(tagged) > 1 else tagged[0]
    with union.execute_and_collect() as results:
        return Counter(tuple(json.loads(text)) for text in results)  # type: ignore[misc]


def _plain(record: Any) -> str:
    if isinstance(record, str):
        return json.dumps(record)
    if isinstance(record, dict):
        return json.dumps(record, sort_keys=True)
    values = [v.decode() if isinstance(v, bytes | bytearray) else v for v in record]
    letter = values[-1] if isinstance(values[-1], str) and values[-1].startswith("{") else None
    if letter is not None and '"reason"' in letter:
        return "dead:" + json.loads(letter)["reason"]
    return json.dumps(values)


def test_dedup_of_rows_keys_them_in_the_jvm_and_passes_the_rows_as_they_came(env: Any) -> None:
    from pyflink.common import Types

    row = Types.ROW_NAMED(["order", "amount"], [Types.STRING(), Types.LONG()])
    data = [("a", 1), ("b", 2), ("a", 3), (None, 4), ("", 5), ("c", 6), ("b", 7)]
    stream = env.from_collection(data, type_info=row)
    deduped = onceflow.dedup(stream, id_field="order", uid="rows-dedup")
    assert deduped.passed.get_type() == row
    got = _collect(env, passed=deduped.passed, dead=deduped.dead_letters)
    assert got == Counter(
        {
            ("passed", '["a", 1]'): 1,
            ("passed", '["b", 2]'): 1,
            ("passed", '["c", 6]'): 1,
            ("dead", "dead:missing_field"): 2,
        }
    )


def test_dedup_of_dicts_keys_them_in_python_with_a_key_function(env: Any) -> None:
    data = [{"id": 1, "x": "a"}, {"id": 2}, {"id": 1, "x": "b"}, {"x": "no id"}, {"id": "1"}]
    stream = env.from_collection(data)
    deduped = onceflow.dedup(stream, key=lambda d: d.get("id"), uid="dicts-dedup")
    got = _collect(env, passed=deduped.passed, dead=deduped.dead_letters)
    # str() of the key: 1 and "1" are one identity for a key function.
    assert got == Counter(
        {
            ("passed", '{"id": 1, "x": "a"}'): 1,
            ("passed", '{"id": 2}'): 1,
            ("dead", "dead:missing_field"): 1,
        }
    )


def test_versioned_update_of_dicts_routes_stale_and_conflicting_changes(env: Any) -> None:
    data = [
        {"sku": "s1", "v": 2, "qty": 5},
        {"sku": "s1", "v": 1, "qty": 9},  # older: stale
        {"sku": "s1", "v": 2, "qty": 6},  # same version, other content: conflict
        {"sku": "s1", "v": 2, "qty": 5},  # the applied one again: a repeat, dropped
        {"sku": "s2", "v": 1, "qty": 1},
        {"sku": "s2", "v": "x"},  # not a version: dead letter
    ]
    stream = env.from_collection(data)
    updated = onceflow.versioned_update(
        stream, key_field="sku", version_field="v", uid="dicts-versioned"
    )
    got = _collect(
        env,
        applied=updated.applied,
        stale=updated.stale.map(lambda r: r[0]),
        conflicts=updated.conflicts.map(lambda r: r[0]),
        dead=updated.dead_letters,
    )
    assert got == Counter(
        {
            ("applied", '{"qty": 5, "sku": "s1", "v": 2}'): 1,
            ("applied", '{"qty": 1, "sku": "s2", "v": 1}'): 1,
            ("stale", '"s1"'): 1,
            ("conflicts", '"s1"'): 1,
            ("dead", "dead:wrong_type"): 1,
        }
    )


def test_operators_refuse_what_cannot_work(env: Any) -> None:
    from pyflink.common import Types

    row = Types.ROW_NAMED(["order"], [Types.STRING()])
    stream = env.from_collection([("a",)], type_info=row)
    with pytest.raises(OnceflowError, match="not a field"):
        onceflow.dedup(stream, id_field="id", uid="refused-1")
    with pytest.raises(OnceflowError, match="ttl_ms must be positive"):
        onceflow.dedup(stream, id_field="order", ttl_ms=0, uid="refused-2")
    with pytest.raises(OnceflowError, match="mode"):
        onceflow.versioned_update(stream, key_field="order", mode="latest", uid="refused-3")

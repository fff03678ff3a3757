"""The two versioned-update paths, differential: the same changes through both, the same answers.

One bounded job on the mini-cluster (parallelism 1, so both paths see each key's
changes in the same order) runs ``versioned_update(..., path="jvm")`` and
``versioned_update(..., path="python")`` over the same JSON change events, in
``newer_wins`` and in ``compare_and_set`` (with a state TTL, so the TTL's state
descriptor is exercised): the hostile corpus, hypothesis-generated change events
over a handful of keys (small versions, so stale, conflicting and repeated changes
are common; fields absent, null, of every type, repeated; lone surrogates; huge
numbers) and their re-deliveries. Both paths must write the same applied records,
byte-identical stale and conflict reports and dead letters (the reason included),
and the same applied-changes rows (all but the processing time of the write).
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from typing import Any

from hostile_corpus import MAX_RECORD_BYTES, cases_for
from json_strategies import change_events, drawn

from onceflow.operators.records import parse_dead_letter
from onceflow.operators.versioned.stream import versioned_update

TOPIC = "changes"

MODES: dict[str, dict[str, Any]] = {
    "nw": {"mode": "newer_wins"},
    "cas": {"mode": "compare_and_set", "ttl_ms": 24 * 3600 * 1000},
}
"""``versioned_update``'s arguments of each mode the paths are compared in."""

OUTPUTS = ("applied", "stale", "conflicts", "dead_letters")

# The applied-changes row as text, every column but applied_ms (NULL spelled out).
_CHANGE_COLUMNS = (
    "`key`", "CAST(`version` AS STRING)", "`op`", "`payload_json`",
    "CAST(`expected_version` AS STRING)", "CAST(`replaced_version` AS STRING)",
    "`source_topic`", "CAST(`source_partition` AS STRING)", "CAST(`source_offset` AS STRING)",
)  # fmt: skip
_CHANGE_TEXT = (
    "CONCAT_WS('|', " + ", ".join(f"COALESCE({c}, '<null>')" for c in _CHANGE_COLUMNS) + ")"
)


def _run_both_paths(raws: list[bytes | None]) -> dict[str, Counter[tuple[Any, ...]]]:
    """``{"nw-jvm-applied": ..., "cas-python-changes": ...}``: each output of each path
    in each mode, as multisets of ``(key, value)``; one job runs all four. The outputs
    are tagged and united in SQL: no Python beyond the operators under test."""
    from pyflink.common import Row

    from onceflow.runtime.flinkenv import FlinkSettings, create_env
    from onceflow.streams import json_record_type, table_env

    env = create_env(FlinkSettings(parallelism=1, checkpoint_interval_ms=0))
    rows = [Row(raw, TOPIC, 0, offset) for offset, raw in enumerate(raws)]
    source = env.from_collection(rows, type_info=json_record_type())
    tenv = table_env(env)
    selects = []
    for mode, arguments in MODES.items():
        for path in ("jvm", "python"):
            out = versioned_update(source, max_record_bytes=MAX_RECORD_BYTES,
                                   uid=f"diff-{mode}-{path}", path=path, **arguments)  # fmt: skip
            for kind in (*OUTPUTS, "changes"):
                name = f"{mode}-{path}-{kind}"
                view = name.replace("-", "_")
                tenv.create_temporary_view(view, tenv.from_data_stream(getattr(out, kind)))
                # As text: PyFlink cannot collect a NULL BYTES value (a tombstone).
                value = _CHANGE_TEXT if kind == "changes" else "COALESCE(TO_BASE64(`v`), '<null>')"
                selects.append(f"SELECT '{name}' AS n, `key` AS k, {value} AS v FROM `{view}`")
    union = tenv.to_data_stream(tenv.sql_query(" UNION ALL ".join(selects)))
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    with union.execute_and_collect() as results:
        for name, key, value in results:
            found.setdefault(name, Counter())[(key, value)] += 1
    return found


def _assert_same_answers(found: dict[str, Counter[Any]], mode: str, at: int) -> None:
    def out(name: str) -> Counter[Any]:
        return found.get(f"{mode}-{name}", Counter())

    for kind in (*OUTPUTS, "changes"):
        jvm, python = out(f"jvm-{kind}"), out(f"python-{kind}")
        only_jvm, only_python = jvm - python, python - jvm
        assert not only_jvm and not only_python, (
            f"{mode}, {kind} (drawn with seed {at}): the paths differ\n"
            f" only jvm: {list(only_jvm)[:5]}\n only python: {list(only_python)[:5]}"
        )
    # The comparison means something: every kind of outcome occurred.
    for kind in OUTPUTS:
        assert out(f"jvm-{kind}"), f"{mode}: no {kind} output to compare"
    for (_, letter), _count in out("jvm-dead_letters").items():
        assert parse_dead_letter(base64.b64decode(letter))["source"]["topic"] == TOPIC


def test_jvm_and_python_paths_apply_report_and_dead_letter_the_same_changes() -> None:
    at = random.randrange(2**32)
    generated = [raw for batch in drawn(change_events(30), 12, at) for raw in batch]
    # A tombstone (None) cannot be a collection element; test_hostile_input sends the
    # whole corpus, tombstones included, through Kafka to the job on its default path.
    corpus = [raw for _, raw, _ in cases_for("versioned") if raw is not None]
    # A conflict, a stale change, a repeat and a compare-and-set chain, whatever was drawn.
    fixed = [
        b'{"key": "f", "version": 2, "payload": {"a": 1}}',
        b'{"key": "f", "version": 2, "payload": {"a": 2}}',
        b'{"key": "f", "version": 1, "payload": {"a": 0}}',
        b'{"key": "f", "version": 2, "payload": {"a": 1}}',
        b'{"key": "f", "version": 3, "op": "delete", "expected_version": 2}',
        b'{"key": "f", "version": 4, "payload": {"b": "\\ud800"}, "expected_version": 3}',
        b'{"key": "f", "version": 4, "payload": {"b": "\\u00e9\\n"}}',
    ]
    found = _run_both_paths([*corpus, *fixed, *generated])
    for mode in MODES:
        _assert_same_answers(found, mode, at)
    # The modes differ where they must: a create of a live entity conflicts only in CAS.
    assert sum(found["cas-jvm-conflicts"].values()) > sum(found["nw-jvm-conflicts"].values())

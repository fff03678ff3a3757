"""The two dedup paths, differential: the same records through both, the same answers.

One bounded job on the mini-cluster (parallelism 1, so "first" is the same record
for both) runs ``dedup(..., path="jvm")`` and ``dedup(..., path="python")`` over the
same JSON records, by id and by content fingerprint: the hostile corpus, duplicates
of its valid records, and hypothesis-generated records (lone surrogates, duplicate
members, huge numbers, escapes, nesting, random and mutated bytes). Both paths must
pass the same records (key, bytes, source position) and write byte-identical dead
letters (the reason included). Where the JVM's scanner and Python's parser
disagree, the record is a dead letter on both paths, never a different answer.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hostile_corpus import MAX_RECORD_BYTES, cases_for
from json_strategies import drawn, records

from onceflow.operators.dedup.stream import dedup
from onceflow.operators.records import parse_dead_letter

TOPIC = "paths"


IDENTITIES: dict[str, dict[str, Any]] = {"id": {"id_field": "id"}, "fp": {"fingerprint": True}}
"""``dedup``'s identity arguments of each mode the paths are compared in."""


def _run_both_paths(raws: list[bytes | None]) -> dict[str, Counter[tuple[Any, ...]]]:
    """``{"id-jvm-passed": ..., "fp-python-dead": ...}``: each output of each path in
    each identity mode (:data:`IDENTITIES`), as multisets; one job runs all four. The
    outputs are tagged and united in SQL: no Python beyond the operators under test."""
    from pyflink.common import Row

    from onceflow.runtime.flinkenv import FlinkSettings, create_env
    from onceflow.streams import json_record_type, table_env

    settings = FlinkSettings(parallelism=1, checkpoint_interval_ms=0)
    env = create_env(settings)
    rows = [Row(raw, TOPIC, 0, offset) for offset, raw in enumerate(raws)]
    source = env.from_collection(rows, type_info=json_record_type())
    tenv = table_env(env)
    selects = []
    for mode, identity in IDENTITIES.items():
        for path in ("jvm", "python"):
            out = dedup(source, ttl_ms=None, max_record_bytes=MAX_RECORD_BYTES,
                        uid=f"diff-{mode}-{path}", path=path, **identity)  # fmt: skip
            for kind, stream in (("passed", out.passed), ("dead", out.dead_letters)):
                name = f"{mode}-{path}-{kind}"
                view = name.replace("-", "_")
                tenv.create_temporary_view(view, tenv.from_data_stream(stream))
                # passed: key|topic/partition/offset and the bytes; dead: the DLQ record.
                key = (
                    "CONCAT(`key`, '|', `topic`, '/', CAST(`partition` AS STRING), '/', "
                    "CAST(`offset` AS STRING))"
                    if kind == "passed"
                    else "`key`"
                )
                selects.append(f"SELECT '{name}' AS n, {key} AS k, `v` FROM `{view}`")
    union = tenv.to_data_stream(tenv.sql_query(" UNION ALL ".join(selects)))
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    with union.execute_and_collect() as results:
        for name, key, value in results:
            # Collected BYTES may come back as Java's signed bytes.
            raw = None if value is None else bytes(b & 0xFF for b in value)
            found.setdefault(name, Counter())[(key, raw)] += 1
    return found


def _assert_same_answers(
    raws: list[bytes | None], found: dict[str, Counter[Any]], mode: str, at: int
) -> None:
    def out(name: str) -> Counter[Any]:
        return found.get(f"{mode}-{name}", Counter())

    for kind in ("passed", "dead"):
        jvm, python = out(f"jvm-{kind}"), out(f"python-{kind}")
        only_jvm, only_python = jvm - python, python - jvm
        assert not only_jvm and not only_python, (
            f"{mode}, {kind} (drawn with seed {at}): the paths differ\n"
            f" only jvm: {list(only_jvm)[:5]}\n only python: {list(only_python)[:5]}"
        )
    total = sum(out("jvm-passed").values()) + sum(out("jvm-dead").values())
    assert total <= len(raws) and len(out("jvm-passed")) > 0
    for (_, letter), _count in out("jvm-dead").items():
        assert parse_dead_letter(letter)["source"]["topic"] == TOPIC


def test_jvm_and_python_paths_pass_and_dead_letter_the_same_records() -> None:
    """By id and by content fingerprint (the JVM path keys by one Python call per record,
    the Python path's code, and keeps the state in Flink's deduplication)."""
    at = random.randrange(2**32)
    generated = [raw for batch in drawn(records(30), 10, at) for raw in batch]
    corpus = [raw for _, raw, _ in cases_for("dedup")]
    valid = [raw for raw in [*corpus, *generated] if raw and raw.startswith(b"{")]
    # Duplicates: a valid-looking record again, the generated ones once more, and the
    # same content with its members reordered (a fingerprint's duplicate).
    reordered = [b'{"b": 2, "a": 1}', b'{"a": 1, "b": 2}', b'{"a":1,"b":2}', b'{"a": 1.0, "b": 2}']
    raws = [*corpus, *generated, *valid[::3], *generated[::4], *reordered]
    found = _run_both_paths(raws)
    for mode in IDENTITIES:
        _assert_same_answers(raws, found, mode, at)
    # The modes differ where they must: records without an id pass by fingerprint.
    assert len(found["fp-jvm-passed"]) > len(found["id-jvm-passed"])

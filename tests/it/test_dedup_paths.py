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

from collections import Counter
from typing import Any

from hostile_corpus import MAX_RECORD_BYTES, cases_for
from hypothesis import HealthCheck, Phase, given, settings
from json_strategies import records

from onceflow.operators.dedup.stream import dedup
from onceflow.operators.records import parse_dead_letter

TOPIC = "paths"


def _run_both_paths(
    raws: list[bytes | None], identity: dict[str, Any]
) -> dict[str, Counter[tuple[Any, ...]]]:
    """``{"jvm-passed": ..., "python-dead": ...}``: each output of each path, as multisets.

    :param identity: ``dedup``'s identity arguments (``id_field=`` or ``fingerprint=``).
    """
    from pyflink.common import Row, Types

    from onceflow.runtime.flinkenv import FlinkSettings, create_env
    from onceflow.streams import json_record_type

    # No Python operator chaining: it would fuse the test's tagging maps into the
    # operators under test, copying their uids (a "hash collision" at submission).
    settings = FlinkSettings(
        parallelism=1,
        checkpoint_interval_ms=0,
        extra={"python.operator-chaining.enabled": "false"},
    )
    env = create_env(settings)
    rows = [Row(raw, TOPIC, 0, offset) for offset, raw in enumerate(raws)]
    source = env.from_collection(rows, type_info=json_record_type())
    tagged = Types.ROW([Types.STRING(), Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
    outputs = []
    for path in ("jvm", "python"):
        out = dedup(source, ttl_ms=None, max_record_bytes=MAX_RECORD_BYTES,
                    uid=f"diff-{path}", path=path, **identity)  # fmt: skip
        for kind, stream in (("passed", out.passed), ("dead", out.dead_letters)):
            name = f"{path}-{kind}"
            if kind == "passed":
                mapped = stream.map(
                    lambda r, n=name: Row(n, f"{r[0]}|{r[2]}/{r[3]}/{r[4]}", r[1]),
                    output_type=tagged,
                )
            else:
                mapped = stream.map(lambda r, n=name: Row(n, r[0], r[1]), output_type=tagged)
            outputs.append(mapped)
    union = outputs[0].union(*outputs[1:])
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    with union.execute_and_collect() as results:
        for name, key, value in results:
            # Collected BYTES come back as Java's signed bytes.
            raw = None if value is None else bytes(b & 0xFF for b in value)
            found.setdefault(name, Counter())[(key, raw)] += 1
    return found


def _assert_same_answers(raws: list[bytes | None], identity: dict[str, Any]) -> None:
    found = _run_both_paths(raws, identity)
    for kind in ("passed", "dead"):
        jvm, python = found.get(f"jvm-{kind}", Counter()), found.get(f"python-{kind}", Counter())
        only_jvm, only_python = jvm - python, python - jvm
        assert not only_jvm and not only_python, (
            f"{kind}: the paths differ\n only jvm: {list(only_jvm)[:5]}\n"
            f" only python: {list(only_python)[:5]}"
        )
    total = sum(found.get("jvm-passed", Counter()).values()) + sum(
        found.get("jvm-dead", Counter()).values()
    )
    distinct_passed = len(found.get("jvm-passed", Counter()))
    assert total <= len(raws) and distinct_passed > 0
    for (_, letter), _count in found.get("jvm-dead", Counter()).items():
        assert parse_dead_letter(letter)["source"]["topic"] == TOPIC


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a job
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(generated=records(300))
def test_jvm_and_python_paths_pass_and_dead_letter_the_same_records(
    generated: list[bytes],
) -> None:
    corpus = [raw for _, raw, _ in cases_for("dedup")]
    valid = [raw for raw in [*corpus, *generated] if raw and raw.startswith(b'{"id"')]
    # Duplicates: a valid-looking record again, and the generated ones once more.
    raws = [*corpus, *generated, *valid[::3], *generated[::4]]
    _assert_same_answers(raws, {"id_field": "id"})


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(generated=records(300))
def test_fingerprint_paths_pass_and_dead_letter_the_same_records(generated: list[bytes]) -> None:
    """By content fingerprint the JVM path keys by one Python call per record (the
    Python path's code) and keeps the state in Flink's deduplication."""
    corpus = [raw for _, raw, _ in cases_for("dedup")]
    valid = [raw for raw in [*corpus, *generated] if raw and raw.startswith(b"{")]
    # Duplicates: byte-identical copies, and member order changed (the same content).
    reordered = [b'{"b": 2, "a": 1}', b'{"a": 1, "b": 2}', b'{"a":1,"b":2}', b'{"a": 1.0, "b": 2}']
    raws = [*corpus, *generated, *valid[::3], *generated[::4], *reordered]
    _assert_same_answers(raws, {"fingerprint": True})

"""Where the Python operator's time goes, without Flink around it.

The dedup job's per-record Python work is ``DedupFunction.process_element``
(parse the JSON, validate, derive the identity, the dedup core's state check,
build the output ``Row``). This module runs exactly that code in a plain loop over the same
workload records, with in-memory state, and reports:

- per-record microseconds of each stage, timed separately: ``json.loads`` alone
  (the C parser), ``parse_object`` (``json.loads`` plus strict-number hooks and
  checks), ``identity_of``, the dedup core with in-memory state, and the whole
  ``process_element``;
- the functions with the most own time under ``cProfile``.

The sum is what Python logic alone costs per record; the rest of the per-record
time of a real thread-mode run (1 / its records/s) is the framework: the PEMJA
calls between the JVM and Python, converting rows and bytes, keyed state through
the JVM, the Kafka connector and the checkpointing.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import logging
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from onceflow.testing.workload import WorkloadSpec, generate

__all__ = ["WHOLE_STAGE", "profile_operator"]

log = logging.getLogger(__name__)


class _Counter:
    def inc(self, n: int = 1) -> None:
        pass


def _per_record_us(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs (the least disturbed by other work), per record."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


WHOLE_STAGE = "DedupFunction.process_element (parse + identity + key check + dedup + Row)"
"""The label of the whole per-record call in the profile."""


def profile_operator(spec: WorkloadSpec, limit: int = 100_000, top: int = 12) -> dict[str, Any]:
    """Time and profile the dedup job's Python logic on ``spec``'s first ``limit`` records."""
    from pyflink.common import Row
    from pyflink.datastream import OutputTag

    from onceflow.operators.dedup.core import DedupCore
    from onceflow.operators.dedup.flink import DedupFunction
    from onceflow.operators.dedup.identity import IdentitySpec, identity_of
    from onceflow.operators.records import Parsed, Rejected, parse_object
    from onceflow.operators.state import KeyedMemoryStore
    from onceflow.streams import kafka_record_type

    values = [item.value for item in itertools.islice(generate(spec), limit)]
    n = len(values)
    ident_spec = IdentitySpec.by_id("id")
    max_bytes = 512 * 1024
    parsed = [parse_object(v, max_bytes) for v in values]

    def jvm_key(p: Parsed | Rejected) -> str:
        # The key the source query computes (JSON_QUERY's rendering of the id), '' if none.
        if isinstance(p, Rejected) or isinstance(identity_of(p.value, ident_spec), Rejected):
            return ""
        return json.dumps([p.value["id"]], ensure_ascii=False, separators=(",", ":"))

    rows = [
        Row(jvm_key(p), v, "in", i % 4, i)
        for i, (p, v) in enumerate(zip(parsed, values, strict=True))
    ]
    objects = [p.value for p in parsed if isinstance(p, Parsed)]
    idents = [identity_of(o, ident_spec) for o in objects]
    # The keyed operator as Flink drives it: the key's state set before each call.
    keys = [str(identity_of(p.value, ident_spec)) if isinstance(p, Parsed) else "" for p in parsed]
    dead_letters = OutputTag("dead-letters", kafka_record_type())
    operator = DedupFunction(ident_spec, max_bytes, 24 * 3600 * 1000, dead_letters)
    operator.seen = operator.dropped = operator.passed = operator.dlq = _Counter()

    def dedup() -> None:
        core = DedupCore(24 * 3600 * 1000)
        state: KeyedMemoryStore[int] = KeyedMemoryStore()
        for i, key in enumerate(idents):
            core.process(state.for_key(str(key)), i)

    def whole() -> None:
        state: KeyedMemoryStore[int] = KeyedMemoryStore()
        for key, row in zip(keys, rows, strict=True):
            operator.store = state.for_key(key)  # type: ignore[assignment]
            for _ in operator.process_element(row, None):
                pass

    # Each stage discards its results, like the operator does: nothing piles up for the GC.
    def loads() -> None:
        for v in values:
            json.loads(v)

    def parse() -> None:
        for v in values:
            parse_object(v, max_bytes)

    def identities() -> None:
        for o in objects:
            identity_of(o, ident_spec)

    stages = {
        "json.loads (C parser alone)": loads,
        "parse_object (json.loads + strict checks)": parse,
        "identity_of": identities,
        "DedupCore.process (in-memory state)": dedup,
        WHOLE_STAGE: whole,
    }
    per_record = {label: round(_per_record_us(fn, n), 2) for label, fn in stages.items()}

    profiler = cProfile.Profile()
    profiler.enable()
    whole()
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime")
    top_functions: list[dict[str, Any]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        raw.items(), key=lambda kv: kv[1][2], reverse=True
    )[:top]:
        where = f"{os.path.basename(filename)}:{line}" if line else filename
        top_functions.append(
            {
                "function": f"{func} ({where})",
                "calls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
                "us_per_record": round(tt / n * 1e6, 2),
            }
        )
    whole_us = per_record[WHOLE_STAGE]
    json_us = per_record["parse_object (json.loads + strict checks)"]
    return {
        "records": n,
        "per_record_us": per_record,
        "json_share_of_logic": round(json_us / whole_us, 3) if whole_us else None,
        "python_logic_max_records_per_s": round(1e6 / whole_us) if whole_us else None,
        "top_functions": top_functions,
        "note": "pure-Python loop, in-memory state; cProfile sorted by own time",
    }

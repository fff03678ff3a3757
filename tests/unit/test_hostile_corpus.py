"""The hostile-input corpus against the pure cores: its expectations are what the
Python half of each job decides (the ITs run the same corpus through the JVM).

Only :data:`~onceflow.operators.records.AMBIGUOUS_KEY` cannot be decided here: it needs
the key the JVM computed.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hostile_corpus import CORPUS, MAX_RECORD_BYTES, PASS, cases_for

from onceflow.operators.dedup.identity import IdentitySpec, identity_of
from onceflow.operators.records import AMBIGUOUS_KEY, REASONS, Rejected, parse_object
from onceflow.operators.versioned.core import parse_change


def _dedup(raw: bytes | None) -> str:
    parsed = parse_object(raw, MAX_RECORD_BYTES)
    ident = (
        parsed
        if isinstance(parsed, Rejected)
        else identity_of(parsed.value, IdentitySpec.by_id("id"))
    )
    return ident.reason if isinstance(ident, Rejected) else PASS


def _versioned(raw: bytes | None) -> str:
    parsed = parse_object(raw, MAX_RECORD_BYTES)
    event = parsed if isinstance(parsed, Rejected) else parse_change(parsed.value)
    return event.reason if isinstance(event, Rejected) else PASS


@pytest.mark.parametrize(("job", "decide"), [("dedup", _dedup), ("versioned", _versioned)])
def test_the_python_half_decides_what_the_corpus_expects(job: str, decide: object) -> None:
    assert callable(decide)
    wrong = [
        f"{name}: {decide(raw)} != {expect}"
        for name, raw, expect in cases_for(job)
        if expect != AMBIGUOUS_KEY and decide(raw) != expect
    ]
    assert not wrong, wrong
    # The JVM-only class passes the Python half: only the key check can catch it.
    assert all(decide(raw) == PASS for _, raw, e in cases_for(job) if e == AMBIGUOUS_KEY)


def test_corpus_is_broad_named_and_unique() -> None:
    assert len(CORPUS) >= 25
    names = [case.name for case in CORPUS]
    assert len(set(names)) == len(names)
    for job in ("dedup", "versioned"):
        cases = cases_for(job)
        assert all(expect == PASS or expect in REASONS for _, _, expect in cases)
        raws = Counter(raw for _, raw, _ in cases)
        assert max(raws.values()) == 1, [r for r, n in raws.items() if n > 1]

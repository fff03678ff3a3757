"""What the versioned-update operator writes: payload text, outcome reports, change rows.

Pure functions (no pyflink), shared by the PyFlink adapter
(:mod:`onceflow.operators.versioned.flink`) and the test oracle (:mod:`onceflow.testing.changes`),
so both sides encode a payload the same way and a unit test pins the format.

Every encoding is deterministic (sorted members, no spaces): a record replayed
after a failover is byte-identical to its first attempt, which keeps the
compacted topic's values stable and makes outputs comparable as multisets.
"""

from __future__ import annotations

import json
from typing import Any, Final

from onceflow.operators.records import hash_of_canonical
from onceflow.operators.versioned.core import DELETE, ChangeEvent, Outcome

__all__ = [
    "CHANGE_COLUMNS",
    "applied_value",
    "change_row",
    "encoded_change",
    "event_document",
    "json_text",
    "outcome_report",
]

CHANGE_COLUMNS: Final = (
    ("key", "STRING", False),
    ("version", "BIGINT", False),
    ("op", "STRING", False),
    ("payload_json", "STRING", True),
    ("expected_version", "BIGINT", True),
    ("replaced_version", "BIGINT", True),
    ("source_topic", "STRING", True),
    ("source_partition", "INT", True),
    ("source_offset", "BIGINT", True),
    ("applied_ms", "BIGINT", False),
)
"""Columns of the applied-changes log: ``(name, type, nullable)`` for a RecordSchema."""


def json_text(value: Any) -> str:
    """Canonical JSON text (sorted members, no spaces) that always encodes as UTF-8.

    Non-ASCII text is kept as is; a lone surrogate (legal as a ``\\ud800`` escape
    in JSON input) cannot be UTF-8, so such a value is written with ASCII escapes
    instead, still deterministically.
    """
    return _json_text_and_bytes(value)[0]


def _json_text_and_bytes(value: Any) -> tuple[str, bytes | None]:
    """:func:`json_text` and its UTF-8 bytes, which are also the value's
    :func:`~onceflow.operators.records.canonical_json`; None for the bytes when the
    text had to fall back to ASCII escapes (then they differ)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True), None


def applied_value(event: ChangeEvent) -> bytes | None:
    """The compacted topic's value for an applied event: payload JSON, or None (tombstone)."""
    if event.op == DELETE:
        return None
    return json_text(event.payload).encode("utf-8")


def encoded_change(event: ChangeEvent) -> tuple[str | None, str, str]:
    """What the JVM path's decision needs of an event, encoded once in Python:
    ``(payload_text, content_hash, key_json)``.

    ``payload_text`` is :func:`json_text` of the payload (None without one),
    ``content_hash`` is :attr:`ChangeEvent.content_hash`, both from one
    serialisation; ``key_json`` is the key as JSON text escaped as
    :func:`outcome_report` escapes it (ASCII escapes when the payload forces them:
    a lone surrogate), so the JVM writes the same report bytes from these pieces.
    """
    if event.payload is None:  # a delete without a payload
        return None, event.content_hash, json.dumps(event.key, ensure_ascii=False)
    text, canonical = _json_text_and_bytes(event.payload)
    if event.op == DELETE or canonical is None:
        content = event.content_hash  # a tombstone, or (rare) hashed from scratch
    else:
        content = hash_of_canonical(canonical)
    return text, content, json.dumps(event.key, ensure_ascii=canonical is None)


def event_document(event: ChangeEvent) -> dict[str, Any]:
    """The event as a JSON object (the normalised fields, not the producer's bytes)."""
    return {
        "key": event.key,
        "version": event.version,
        "op": event.op,
        "payload": event.payload,
        "expected_version": event.expected_version,
    }


def outcome_report(
    outcome: Outcome, topic: str | None, partition: int | None, offset: int | None
) -> bytes:
    """The value of a ``stale`` or ``conflict`` record: event, stored version and reason.

    ``{"outcome", "reason", "stored_version", "expired", "event": {...},
    "source": {"topic", "partition", "offset"}}`` as UTF-8 JSON.
    """
    doc = {
        "outcome": outcome.kind,
        "reason": outcome.reason,
        "stored_version": outcome.stored_version,
        "expired": outcome.expired,
        "event": event_document(outcome.event),
        "source": {"topic": topic, "partition": partition, "offset": offset},
    }
    return json_text(doc).encode("utf-8")


def change_row(
    outcome: Outcome,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    applied_ms: int,
) -> tuple[Any, ...]:
    """The applied-changes log row of an applied outcome, in :data:`CHANGE_COLUMNS` order."""
    event = outcome.event
    return (
        event.key,
        event.version,
        event.op,
        None if event.payload is None else json_text(event.payload),
        event.expected_version,
        outcome.stored_version,
        topic,
        partition,
        offset,
        applied_ms,
    )

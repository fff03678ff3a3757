"""Deterministic change-event workloads and their oracle, for the versioned upsert job.

:func:`generate_changes` writes a stream of JSON change events
``{key, version, op, payload[, expected_version]}`` that exercises every path
of the versioned operator:

- **changes**: per entity key, increasing versions (with gaps), upserts and
  deletes; each carries the version its writer saw as ``expected_version``;
- **shuffled** arrival: each change may be displaced by up to
  ``shuffle_window`` positions, so an older version of a key can arrive after
  a newer one (stale, or a compare-and-set conflict);
- **duplicates**: byte-identical re-deliveries of a recent record (repeat, or
  stale once the key has moved on);
- **conflicts**: a recent change's key and version with other content;
- **malformed** records: not JSON, not an object, missing/null/empty key,
  missing or non-integer version, negative version, unknown op, an upsert
  without an object payload.

:func:`expected_changes` is the oracle. It does not trust the generator's
labels: it parses the records' bytes in arrival order with the same parsing
rules as the job (:mod:`onceflow.operators.records`, :func:`parse_change`) and runs the
pure core over them (:func:`~onceflow.operators.versioned.core.simulate`). Its view
of an entity is exact as long as each key's records are read in the order
they were written, which holds when the Kafka record key is the entity key
(one partition per key) and there is no TTL.

The comparison helpers turn outputs (Kafka records, Parquet rows, reports) and
oracle entries into hashable identities, so tests compare exact multisets.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onceflow.operators.records import Rejected, parse_object
from onceflow.operators.versioned.core import (
    APPLIED,
    CONFLICT,
    DELETE,
    REPEAT,
    STALE,
    UPSERT,
    ChangeEvent,
    Outcome,
    parse_change,
    simulate,
)
from onceflow.operators.versioned.output import applied_value, json_text

__all__ = [
    "MALFORMED_KINDS",
    "ChangeItem",
    "ChangeOracle",
    "ChangeWorkloadSpec",
    "applied_identity",
    "expected_changes",
    "generate_changes",
    "report_identity",
    "row_identity",
]

MALFORMED_KINDS: tuple[tuple[str, str], ...] = (
    # (what the record is, the reason the job must give)
    ("truncated json", "not_json"),
    ("array", "not_object"),
    ("no key", "missing_field"),
    ("null key", "null_field"),
    ("empty key", "empty_field"),
    ("no version", "missing_field"),
    ("string version", "wrong_type"),
    ("float version", "wrong_type"),
    ("boolean version", "wrong_type"),
    ("negative version", "out_of_range"),
    ("unknown op", "bad_op"),
    ("upsert without payload", "missing_field"),
    ("payload not an object", "wrong_type"),
)
# How far back a duplicate or conflict reaches: recent records, as a retrying producer would.
_RECENT = 40


@dataclass(frozen=True)
class ChangeWorkloadSpec:
    """A change-event workload; the same spec always yields the same bytes.

    :param changes: number of original change events (before duplicates etc.).
    :param keys: number of distinct entity keys.
    :param seed: random seed.
    :param delete_ratio: chance that a change of a live entity is a delete.
    :param duplicate_ratio: re-deliveries, as a fraction of ``changes``.
    :param conflict_ratio: conflicting writes, as a fraction of ``changes``.
    :param malformed_ratio: malformed records, as a fraction of ``changes``.
    :param shuffle_window: how many positions a change may arrive late (0: in order).
    """

    changes: int
    keys: int
    seed: int
    delete_ratio: float = 0.1
    duplicate_ratio: float = 0.1
    conflict_ratio: float = 0.05
    malformed_ratio: float = 0.02
    shuffle_window: int = 6

    def __post_init__(self) -> None:
        if self.changes < 0 or self.keys < 1 or self.shuffle_window < 0:
            raise ValueError("changes >= 0, keys >= 1 and shuffle_window >= 0 are required")
        for name in ("delete_ratio", "duplicate_ratio", "conflict_ratio", "malformed_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")

    @property
    def duplicates(self) -> int:
        return round(self.changes * self.duplicate_ratio) if self.changes else 0

    @property
    def conflicts(self) -> int:
        return round(self.changes * self.conflict_ratio) if self.changes else 0

    @property
    def malformed(self) -> int:
        return round(self.changes * self.malformed_ratio)

    @property
    def total(self) -> int:
        """Number of records the workload yields."""
        return self.changes + self.duplicates + self.conflicts + self.malformed


@dataclass(frozen=True, slots=True)
class ChangeItem:
    """One record of a change workload.

    :param key: the Kafka record key (the entity key; None for malformed records).
    :param value: the record value, as written to Kafka.
    :param kind: ``change``, ``duplicate``, ``conflict`` or ``malformed``.
    :param entity: the entity key of a well-formed record.
    :param version: the version of a well-formed record.
    :param reason: for a malformed record, the rejection reason the job must give.
    """

    key: bytes | None
    value: bytes
    kind: str
    entity: str | None = None
    version: int | None = None
    reason: str | None = None


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _change_value(
    key: str, version: int, op: str, payload: dict[str, Any] | None, expected: int | None, n: int
) -> bytes:
    doc: dict[str, Any] = {"key": key, "version": version}
    # Every fifth upsert leaves "op" out: absent means upsert.
    if op == DELETE or n % 5:
        doc["op"] = op
    if payload is not None:
        doc["payload"] = payload
    if expected is not None:
        doc["expected_version"] = expected
    return _dumps(doc)


def _malformed_value(kind: str, seq: int) -> bytes:
    key = f"bad-{seq:06d}"
    base: dict[str, Any] = {"key": key, "version": seq + 1, "op": UPSERT, "payload": {"n": seq}}
    if kind == "truncated json":
        return b'{"key": "' + key.encode() + b'", "version": '
    if kind == "array":
        return _dumps([key, seq])
    if kind == "no key":
        return _dumps({k: v for k, v in base.items() if k != "key"})
    if kind == "null key":
        return _dumps({**base, "key": None})
    if kind == "empty key":
        return _dumps({**base, "key": "", "n": seq})
    if kind == "no version":
        return _dumps({k: v for k, v in base.items() if k != "version"})
    if kind == "string version":
        return _dumps({**base, "version": str(seq + 1)})
    if kind == "float version":
        return _dumps({**base, "version": seq + 1.5})
    if kind == "boolean version":
        return _dumps({**base, "version": True, "n": seq})
    if kind == "negative version":
        return _dumps({**base, "version": -(seq + 1)})
    if kind == "unknown op":
        return _dumps({**base, "op": "merge"})
    if kind == "upsert without payload":
        return _dumps({k: v for k, v in base.items() if k != "payload"})
    if kind == "payload not an object":
        return _dumps({**base, "payload": [seq]})
    raise AssertionError(f"unknown malformed kind {kind!r}")


def generate_changes(spec: ChangeWorkloadSpec) -> list[ChangeItem]:
    """The records of ``spec`` in arrival order (deterministic; see the module docstring)."""
    rng = random.Random(spec.seed)
    originals = _original_changes(spec, rng)
    # Shuffled arrival: each change is displaced by less than shuffle_window places.
    jitter = [i + rng.uniform(0, spec.shuffle_window) for i in range(len(originals))]
    stream = [originals[i] for i in sorted(range(len(originals)), key=jitter.__getitem__)]
    _insert_duplicates(stream, spec.duplicates, rng)
    _insert_conflicts(stream, spec.conflicts, rng)
    _insert_malformed(stream, spec.malformed, rng)
    return stream


def _original_changes(spec: ChangeWorkloadSpec, rng: random.Random) -> list[ChangeItem]:
    """The changes in write order: versions grow per key, with gaps."""
    last: dict[str, int] = {}
    live: dict[str, bool] = {}
    originals: list[ChangeItem] = []
    for n in range(spec.changes):
        entity = f"e-{rng.randrange(spec.keys):05d}"
        previous = last.get(entity)
        version = (previous or 0) + rng.randint(1, 3)
        op = DELETE if live.get(entity) and rng.random() < spec.delete_ratio else UPSERT
        payload = None if op == DELETE else {"name": f"{entity} v{version}", "n": n, "v": version}
        value = _change_value(entity, version, op, payload, previous, n)
        originals.append(ChangeItem(entity.encode(), value, "change", entity, version))
        last[entity], live[entity] = version, op == UPSERT
    return originals


def _recent_valid(stream: list[ChangeItem], pos: int, rng: random.Random) -> ChangeItem | None:
    """A random well-formed record among the few before ``pos`` (None when there is none)."""
    window = [it for it in stream[max(0, pos - _RECENT) : pos] if it.kind != "malformed"]
    return rng.choice(window) if window else None


def _insert_duplicates(stream: list[ChangeItem], count: int, rng: random.Random) -> None:
    """Re-deliveries: a recent record again, byte for byte."""
    for _ in range(count):
        pos = rng.randrange(1, len(stream) + 1)
        source = _recent_valid(stream, pos, rng)
        if source is not None:
            stream.insert(
                pos,
                ChangeItem(source.key, source.value, "duplicate", source.entity, source.version),
            )


def _insert_conflicts(stream: list[ChangeItem], count: int, rng: random.Random) -> None:
    """Conflicts: a recent key and version, other content (a second writer)."""
    for c in range(count):
        pos = rng.randrange(1, len(stream) + 1)
        source = _recent_valid(stream, pos, rng)
        if source is None:
            continue
        assert source.entity is not None and source.version is not None
        payload = {"name": f"conflict-{c}", "n": -c - 1, "v": source.version}
        expected = json.loads(source.value).get("expected_version")
        value = _change_value(source.entity, source.version, UPSERT, payload, expected, 1)
        stream.insert(pos, ChangeItem(source.key, value, "conflict", source.entity, source.version))


def _insert_malformed(stream: list[ChangeItem], count: int, rng: random.Random) -> None:
    """Malformed records anywhere, each kind in turn, each value distinct."""
    for m in range(count):
        kind, reason = MALFORMED_KINDS[m % len(MALFORMED_KINDS)]
        pos = rng.randrange(0, len(stream) + 1)
        stream.insert(pos, ChangeItem(None, _malformed_value(kind, m), "malformed", reason=reason))


@dataclass
class ChangeOracle:
    """What the versioned upsert job must output for a stream of records.

    :param applied: applied events in arrival order (one Kafka record and one
        Parquet row each).
    :param stale: outcomes routed to the stale topic.
    :param conflicts: outcomes routed to the conflict topic.
    :param repeats: number of dropped re-deliveries.
    :param dead_letters: ``(value, reason)`` of each malformed record, in order.
    :param final: per key, the compacted topic's last value: payload JSON bytes,
        or None (a tombstone) for a deleted entity.
    :param kinds: per input record, in order: ``applied``, ``stale``,
        ``conflict``, ``repeat`` or ``dlq``.
    """

    applied: list[ChangeEvent] = field(default_factory=list)
    stale: list[Outcome] = field(default_factory=list)
    conflicts: list[Outcome] = field(default_factory=list)
    repeats: int = 0
    dead_letters: list[tuple[bytes | None, str]] = field(default_factory=list)
    final: dict[str, bytes | None] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)

    def applied_before(self, n_records: int) -> int:
        """Applied outputs produced by the first ``n_records`` input records."""
        return sum(1 for kind in self.kinds[:n_records] if kind == APPLIED)

    def applied_records(self) -> list[tuple[bytes, bytes | None]]:
        """``(key, value)`` of every applied-topic record, in order."""
        return [applied_identity(e.key.encode("utf-8"), applied_value(e)) for e in self.applied]

    def change_rows(self) -> list[tuple[Any, ...]]:
        """Identities of the Parquet rows (:func:`row_identity`), in order."""
        return [
            (e.key, e.version, e.op, None if e.payload is None else json_text(e.payload))
            for e in self.applied
        ]

    def reports(self, kind: str) -> list[tuple[Any, ...]]:
        """Identities (:func:`report_identity`) of the ``stale`` or ``conflict`` records."""
        outcomes = self.stale if kind == STALE else self.conflicts
        return [_outcome_identity(o) for o in outcomes]


def expected_changes(
    values: Iterable[bytes | None], mode: str, max_record_bytes: int = 512 * 1024
) -> ChangeOracle:
    """The oracle: parse ``values`` in arrival order and run the pure core over them.

    :param values: record values in the order the job reads them (per key).
    :param mode: ``newer_wins`` or ``compare_and_set``.
    :param max_record_bytes: the job's ``--max-record-bytes``.
    """
    oracle = ChangeOracle()
    events: list[ChangeEvent] = []
    slots: list[int] = []  # input position of each event
    for value in values:
        oracle.kinds.append("dlq")
        parsed = parse_object(value, max_record_bytes)
        if isinstance(parsed, Rejected):
            oracle.dead_letters.append((value, parsed.reason))
            continue
        event = parse_change(parsed.value)
        if isinstance(event, Rejected):
            oracle.dead_letters.append((value, event.reason))
            continue
        events.append(event)
        slots.append(len(oracle.kinds) - 1)
    simulation = simulate(events, mode)
    for slot, outcome in zip(slots, simulation.outcomes, strict=True):
        oracle.kinds[slot] = outcome.kind
    for outcome in simulation.outcomes:
        if outcome.kind == APPLIED:
            oracle.applied.append(outcome.event)
            oracle.final[outcome.event.key] = applied_value(outcome.event)
        elif outcome.kind == STALE:
            oracle.stale.append(outcome)
        elif outcome.kind == CONFLICT:
            oracle.conflicts.append(outcome)
        elif outcome.kind == REPEAT:
            oracle.repeats += 1
    deleted = {k for k, state in simulation.final.items() if state.deleted}
    assert deleted == {k for k, v in oracle.final.items() if v is None}, "oracle disagrees"
    return oracle


def applied_identity(key: bytes | None, value: bytes | None) -> tuple[bytes, bytes | None]:
    """An applied-topic record as ``(key, value)``; a tombstone has value None."""
    assert key is not None, "an applied record always has the entity key"
    return (bytes(key), None if value is None else bytes(value))


def row_identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A Parquet change row as ``(key, version, op, payload_json)``."""
    return (row["key"], row["version"], row["op"], row["payload_json"])


def _outcome_identity(outcome: Outcome) -> tuple[Any, ...]:
    e = outcome.event
    payload = None if e.payload is None else json_text(e.payload)
    return (
        outcome.kind,
        e.key,
        e.version,
        e.op,
        payload,
        e.expected_version,
        outcome.stored_version,
    )


def report_identity(value: bytes | None) -> tuple[Any, ...]:
    """A stale/conflict record as ``(outcome, key, version, op, payload, expected, stored)``.

    A null value (never written by the job) becomes ``("null value",)``: unexpected.
    """
    if value is None:
        return ("null value",)
    doc = json.loads(value)
    e = doc["event"]
    payload = None if e["payload"] is None else json_text(e["payload"])
    return (
        doc["outcome"],
        e["key"],
        e["version"],
        e["op"],
        payload,
        e["expected_version"],
        doc["stored_version"],
    )

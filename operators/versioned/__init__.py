"""Exactly-once versioned updates: apply each entity change once, in version order.

See :mod:`onceflow.operators.versioned.core` for the modes (``newer_wins``,
``compare_and_set``), tombstones and the TTL caveat.
"""

from onceflow.operators.versioned.core import (
    APPLIED,
    COMPARE_AND_SET,
    CONFLICT,
    DELETE,
    KINDS,
    MODES,
    NEWER_WINS,
    REPEAT,
    STALE,
    UPSERT,
    ChangeEvent,
    ChangeSchema,
    Outcome,
    StateTuple,
    VersionedSimulation,
    VersionedUpdateCore,
    VersionState,
    parse_change,
    payload_hash,
    simulate,
)

__all__ = [
    "APPLIED",
    "COMPARE_AND_SET",
    "CONFLICT",
    "DELETE",
    "KINDS",
    "MODES",
    "NEWER_WINS",
    "REPEAT",
    "STALE",
    "UPSERT",
    "ChangeEvent",
    "ChangeSchema",
    "Outcome",
    "StateTuple",
    "VersionState",
    "VersionedSimulation",
    "VersionedUpdateCore",
    "parse_change",
    "payload_hash",
    "simulate",
]

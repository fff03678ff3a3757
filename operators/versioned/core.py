"""Versioned updates per entity key: apply each change once, in version order.

A change event names an entity (``key``), carries a producer-assigned
``version``, an ``op`` (``"upsert"`` or ``"delete"``) and, for upserts, the new
``payload``. The adapter keys the stream by entity key and calls
:meth:`VersionedUpdateCore.apply` with that key's state; only ``applied``
outcomes are emitted downstream, the others are counted (and, for conflicts,
usually sent to a side output).

State per key is a :class:`VersionState`: the last applied version, a hash of
its payload, a tombstone flag and the processing time of that write. It is
stored as a plain tuple (:meth:`VersionState.to_tuple`) so the adapter can use
``Types.TUPLE([LONG, STRING, BOOLEAN, LONG])``.

Outcomes (:class:`Outcome`):

* ``applied``: the event changes the entity; state now holds its version.
* ``stale``: the event's version is older than the stored one (late arrival).
* ``repeat``: the same version, op and payload as stored: a re-delivery, dropped.
* ``conflict``: same version with a different payload/op, or (compare-and-set)
  the writer's ``expected_version`` does not match.

Modes:

* ``newer_wins``: apply iff there is no state or ``version > stored``.
  ``expected_version`` is ignored.
* ``compare_and_set``: additionally the writer must have seen the current
  version: ``expected_version == stored version`` (a tombstone's version counts
  as stored). An absent ``expected_version`` means *create*: valid only when no
  live entity exists (no state, or a tombstone). Checks run in this order:
  repeat, same version with other content (conflict), ``version < stored``
  (stale), expectation mismatch (conflict), else applied. So a late event is
  always ``stale``, in both modes, and a producer's retry is always ``repeat``.

Deletes are versioned like upserts. An applied delete stores a tombstone
(``deleted=True``) with its version, so a late, older upsert is ``stale`` and
cannot resurrect the entity; a newer upsert re-creates it. A delete's payload
(if any) is not part of its identity: two deletes of the same version are a
repeat. State grows with the number of distinct keys; tombstones stay until TTL.

TTL (optional, processing time): state whose last applied write is at least
``ttl_ms`` old is treated as absent (and cleared), mirroring Flink state TTL
with ``OnCreateAndWrite``. After expiry a late, *stale* update is applied,
resurrecting a deleted entity or rolling back a newer version, because the
information needed to refuse it is gone. ``ttl_ms`` must therefore exceed the
maximum out-of-orderness (in processing time) of the input. Outcomes on expired
state carry ``expired=True`` so the adapter can count this risk.

Exactly-once: the core is a deterministic function of (state, event, now_ms);
with state checkpointed alongside the source offsets and a transactional sink,
each input yields exactly one outcome in the committed output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from onceflow.operators.records import (
    BAD_OP,
    INVALID_UNICODE,
    MISSING,
    OUT_OF_RANGE,
    WRONG_TYPE,
    Rejected,
    get_path,
    is_unicode,
    require_field,
    split_path,
    stable_hash,
)
from onceflow.operators.state import KeyedMemoryStore, ValueStore

__all__ = [
    "APPLIED",
    "BAD_OP",
    "COMPARE_AND_SET",
    "CONFLICT",
    "DELETE",
    "KINDS",
    "MAX_VERSION",
    "MODES",
    "NEWER_WINS",
    "OPS",
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

_log = logging.getLogger(__name__)

UPSERT: Final = "upsert"
DELETE: Final = "delete"
OPS: Final = (UPSERT, DELETE)

NEWER_WINS: Final = "newer_wins"
COMPARE_AND_SET: Final = "compare_and_set"
MODES: Final = (NEWER_WINS, COMPARE_AND_SET)

APPLIED: Final = "applied"
STALE: Final = "stale"
CONFLICT: Final = "conflict"
REPEAT: Final = "repeat"
KINDS: Final = (APPLIED, STALE, CONFLICT, REPEAT)

MAX_VERSION: Final = 2**63 - 1
"""Versions are stored as a Flink ``LONG``; a larger one would fail serialisation
(a poison record and a restart loop), so it is rejected at parse time instead."""

StateTuple = tuple[int, str, bool, int]
"""``(version, payload_hash, deleted, written_ms)``: what the adapter stores."""

_TOMBSTONE_HASH: Final = "tombstone"


def payload_hash(payload: dict[str, Any] | None) -> str:
    """Return a stable hash of a payload (SHA-256 of canonical JSON, 32 hex chars).

    Member order does not matter; number spelling does (``1`` vs ``1.0``).

    :param payload: the payload object (``None`` hashes like JSON ``null``).
    :return: 32 lowercase hex characters, stable across processes and restarts.
    """
    return stable_hash(payload)


def _is_version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERSION


@dataclass(frozen=True, slots=True)
class VersionState:
    """The state of one entity key.

    :param version: the last applied version.
    :param payload_hash: the hash of its payload (:func:`payload_hash`), or
        ``"tombstone"`` for a delete.
    :param deleted: whether the last applied event was a delete (a tombstone).
    :param written_ms: processing time of the last applied write (for TTL).
    """

    version: int
    payload_hash: str
    deleted: bool
    written_ms: int

    def to_tuple(self) -> StateTuple:
        """Return ``(version, payload_hash, deleted, written_ms)`` for the state backend."""
        return (self.version, self.payload_hash, self.deleted, self.written_ms)

    @classmethod
    def from_tuple(cls, value: Sequence[Any]) -> VersionState:
        """Rebuild from :meth:`to_tuple` output (a tuple or list).

        :param value: the stored sequence.
        :return: the state.
        :raises ValueError: if the value is not a 4-sequence of (int, str, bool,
            int): the state was written by an incompatible version of this
            operator; restore from a compatible savepoint, or start the operator
            with a new uid (and ``--allowNonRestoredState``) to drop the state.
        """
        if (
            len(value) != 4
            or not _is_version(value[0])
            or not isinstance(value[1], str)
            or not isinstance(value[2], bool)
            or isinstance(value[3], bool)
            or not isinstance(value[3], int)
        ):
            raise ValueError(
                f"corrupt versioned state {value!r}: expected (version, payload_hash, deleted, "
                "written_ms); restore from a compatible savepoint or change the operator uid "
                "to start without this state"
            )
        return cls(value[0], value[1], value[2], value[3])


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A change to one entity.

    :param key: the entity key.
    :param version: the producer-assigned version, ``0 <= version <= MAX_VERSION``.
    :param op: ``"upsert"`` or ``"delete"``.
    :param payload: the new content (required for an upsert; optional and not
        compared for a delete).
    :param expected_version: for ``compare_and_set``, the version the writer
        saw; ``None`` means "create".
    :raises ValueError: if a field is invalid (a programming error; input from
        Kafka goes through :func:`parse_change`, which returns ``Rejected``).
    """

    key: str
    version: int
    op: str = UPSERT
    payload: dict[str, Any] | None = field(default=None, hash=False)
    expected_version: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"ChangeEvent.key must be a non-empty str, got {self.key!r}")
        if not _is_version(self.version):
            raise ValueError(
                f"ChangeEvent.version must be an int in [0, 2**63-1], got {self.version!r}"
            )
        if self.op not in OPS:
            raise ValueError(f"ChangeEvent.op must be one of {OPS}, got {self.op!r}")
        if self.op == UPSERT and not isinstance(self.payload, dict):
            raise ValueError(f"an upsert needs a dict payload, got {self.payload!r}")
        if self.payload is not None and not isinstance(self.payload, dict):
            raise ValueError(f"ChangeEvent.payload must be a dict or None, got {self.payload!r}")
        if self.expected_version is not None and not _is_version(self.expected_version):
            raise ValueError(
                f"ChangeEvent.expected_version must be None or an int in [0, 2**63-1], "
                f"got {self.expected_version!r}"
            )

    @property
    def content_hash(self) -> str:
        """What identifies this event's content: the payload hash, or the tombstone marker."""
        return _TOMBSTONE_HASH if self.op == DELETE else payload_hash(self.payload)


@dataclass(frozen=True, slots=True)
class ChangeSchema:
    """Where the change fields live in a record (dotted paths).

    :raises ValueError: if a path is malformed.
    """

    key: str = "key"
    version: str = "version"
    op: str = "op"
    payload: str = "payload"
    expected_version: str = "expected_version"

    def __post_init__(self) -> None:
        for path in (self.key, self.version, self.op, self.payload, self.expected_version):
            split_path(path)


_DEFAULT_SCHEMA: Final = ChangeSchema()


def _version_value(value: object, path: str) -> int | Rejected:
    # bool is an int subclass in Python; JSON true is not a version.
    if isinstance(value, bool) or not isinstance(value, int):
        return Rejected(WRONG_TYPE, f"field {path!r} must be an integer, got {_short(value)}")
    if not 0 <= value <= MAX_VERSION:
        return Rejected(OUT_OF_RANGE, f"field {path!r} is {_short(value)}, must be in [0, 2**63-1]")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_change(
    obj: dict[str, Any], schema: ChangeSchema = _DEFAULT_SCHEMA
) -> ChangeEvent | Rejected:
    """Validate a decoded record as a :class:`ChangeEvent`.

    Never raises on input. Rules, checked in this order:

    1. ``key`` required: a non-empty string or an integer (converted with
       ``str``, so ``42`` and ``"42"`` are the same entity); a string with a
       lone surrogate is :data:`~onceflow.operators.records.INVALID_UNICODE` (no Kafka
       key or Flink key can hold it).
    2. ``version`` required: an integer (not a boolean) in ``[0, 2**63-1]``.
    3. ``op`` optional (absent or null -> ``"upsert"``): a string, exactly
       ``"upsert"`` or ``"delete"``, else :data:`BAD_OP`.
    4. ``payload``: a required object for an upsert; an object, null or absent
       for a delete.
    5. ``expected_version`` optional (absent or null -> create): same rules as
       ``version``.

    :param obj: the decoded record.
    :param schema: where the fields are.
    :return: the event, or :class:`~onceflow.operators.records.Rejected` with one of
        ``missing_field``, ``null_field``, ``empty_field``, ``wrong_type``,
        ``invalid_unicode``, ``out_of_range`` or ``bad_op``.
    """
    key = _parse_key(obj, schema.key)
    if isinstance(key, Rejected):
        return key
    version = _parse_version(obj, schema.version)
    if isinstance(version, Rejected):
        return version
    op = _parse_op(obj, schema.op)
    if isinstance(op, Rejected):
        return op
    payload = _parse_payload(obj, schema.payload, op)
    if isinstance(payload, Rejected):
        return payload
    expected = _parse_expected_version(obj, schema.expected_version)
    if isinstance(expected, Rejected):
        return expected
    return ChangeEvent(key=key, version=version, op=op, payload=payload, expected_version=expected)


def _parse_key(obj: dict[str, Any], path: str) -> str | Rejected:
    """The required key: a string (Unicode text) or an integer, as a string."""
    key = require_field(obj, path, (str, int))
    if isinstance(key, Rejected):
        return key
    if isinstance(key, str) and not is_unicode(key):
        return Rejected(
            INVALID_UNICODE, f"field {path!r} is not Unicode text (a lone surrogate escape)"
        )
    return str(key)


def _parse_version(obj: dict[str, Any], path: str) -> int | Rejected:
    """The required version: an integer (not a boolean) in ``[0, 2**63-1]``."""
    raw_version = require_field(obj, path, (int,))
    if isinstance(raw_version, Rejected):
        return raw_version
    return _version_value(raw_version, path)


def _parse_op(obj: dict[str, Any], path: str) -> str | Rejected:
    """The op: absent or null is an upsert, else exactly one of :data:`OPS`."""
    op = get_path(obj, path)
    if op is None or op is MISSING:
        return UPSERT
    if not isinstance(op, str):
        return Rejected(WRONG_TYPE, f"field {path!r} must be a string, got {_short(op)}")
    if op not in OPS:
        return Rejected(BAD_OP, f"field {path!r} is {_short(op)}, expected one of {OPS}")
    return op


def _parse_payload(obj: dict[str, Any], path: str, op: str) -> dict[str, Any] | None | Rejected:
    """The payload: a required object for an upsert; an object, null or absent for a delete."""
    if op == UPSERT:
        checked = require_field(obj, path, (dict,))
        if isinstance(checked, Rejected):
            return checked
        return cast(dict[str, Any], checked)
    found = get_path(obj, path)
    if found is None or found is MISSING:
        return None
    if isinstance(found, dict):
        return found
    return Rejected(
        WRONG_TYPE,
        f"field {path!r} of a delete must be an object or null, got {_short(found)}",
    )


def _parse_expected_version(obj: dict[str, Any], path: str) -> int | None | Rejected:
    """The optional expected version (absent or null: a create), checked like a version."""
    raw_expected = get_path(obj, path)
    if raw_expected is None or raw_expected is MISSING:
        return None
    return _version_value(raw_expected, path)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`VersionedUpdateCore.apply` decided for one event.

    :param kind: ``"applied"``, ``"stale"``, ``"conflict"`` or ``"repeat"``.
    :param event: the event.
    :param stored_version: the version in state before the event (``None``:
        no state, or expired state).
    :param reason: a human-readable explanation.
    :param expired: whether state existed but was older than the TTL and was
        treated as absent (the resurrection risk described in the module doc).
    """

    kind: str
    event: ChangeEvent
    stored_version: int | None
    reason: str
    expired: bool = False

    @property
    def applied(self) -> bool:
        """Whether the event changed the entity (and must be emitted)."""
        return self.kind == APPLIED


def _same_version(
    state: VersionState | None, event: ChangeEvent, content: str
) -> tuple[str, str] | None:
    """Same version as stored: a re-delivery (repeat) or a second writer (conflict)."""
    if state is None or event.version != state.version:
        return None
    if content == state.payload_hash and (event.op == DELETE) == state.deleted:
        return REPEAT, f"version {state.version} already applied with this content"
    return CONFLICT, f"version {state.version} already applied with other content"


def _older_than_stored(state: VersionState | None, event: ChangeEvent) -> tuple[str, str] | None:
    """Older than stored: a late arrival (stale), never applied."""
    if state is None or event.version >= state.version:
        return None
    return STALE, f"version {event.version} is older than stored {state.version}"


class VersionedUpdateCore:
    """Decide, per change event, whether it applies to its entity's state.

    :param mode: ``"newer_wins"`` or ``"compare_and_set"`` (see the module doc).
    :param ttl_ms: processing-time TTL of an entity's state after its last
        applied write, or ``None`` to keep it forever. Must exceed the maximum
        out-of-orderness of the input, or stale updates may be applied.
    :raises ValueError: on an unknown mode or a ``ttl_ms`` that is not a
        positive int or ``None``.
    """

    __slots__ = ("_mode", "_ttl_ms")

    def __init__(self, mode: str, ttl_ms: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if ttl_ms is not None and (
            isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0
        ):
            raise ValueError(f"ttl_ms must be a positive int or None, got {ttl_ms!r}")
        self._mode = mode
        self._ttl_ms = ttl_ms

    @property
    def mode(self) -> str:
        """The conflict-resolution mode."""
        return self._mode

    @property
    def ttl_ms(self) -> int | None:
        """The state TTL in milliseconds (``None``: none)."""
        return self._ttl_ms

    def apply(self, store: ValueStore[StateTuple], event: ChangeEvent, now_ms: int) -> Outcome:
        """Apply one event to its key's state.

        Only an ``applied`` outcome writes state (so stale, repeated and
        conflicting events do not refresh the TTL); expired state is cleared.

        :param store: the value state of ``event.key`` (a :data:`StateTuple`).
        :param event: the change event.
        :param now_ms: the current processing time in ms.
        :return: the outcome.
        :raises ValueError: if the stored value is corrupt (see
            :meth:`VersionState.from_tuple`).
        """
        state, expired = self._load_state(store, event.key, now_ms)
        # Hashed before any check, so a payload that is not JSON fails on every path.
        content = event.content_hash
        refusal = (
            _same_version(state, event, content)
            or _older_than_stored(state, event)
            or self._unexpected_version(state, event)
        )
        stored = None if state is None else state.version
        if refusal is not None:
            kind, reason = refusal
            return Outcome(kind, event, stored, reason, expired)
        # Apply: an upsert stores its payload hash, a delete a tombstone.
        store.put(VersionState(event.version, content, event.op == DELETE, now_ms).to_tuple())
        if state is None:
            reason = "no state" + (" (expired)" if expired else "")
        else:
            reason = f"version {event.version} replaces {stored}"
        return Outcome(APPLIED, event, stored, reason, expired)

    def _load_state(
        self, store: ValueStore[StateTuple], key: str, now_ms: int
    ) -> tuple[VersionState | None, bool]:
        """Load the state and whether it expired; expired state is cleared (as Flink TTL would)."""
        raw = store.get()
        state = None if raw is None else VersionState.from_tuple(raw)
        if state is None or self._ttl_ms is None or now_ms - state.written_ms < self._ttl_ms:
            return state, False
        _log.debug("state of key %r expired (last write %d ms)", key, state.written_ms)
        store.clear()
        return None, True

    def _unexpected_version(
        self, state: VersionState | None, event: ChangeEvent
    ) -> tuple[str, str] | None:
        """Compare-and-set: a conflict unless the writer has seen the current version."""
        if self._mode != COMPARE_AND_SET:
            return None
        if event.expected_version is None:
            if state is not None and not state.deleted:
                return CONFLICT, f"create, but the entity exists at version {state.version}"
            return None
        if state is None:
            return (
                CONFLICT,
                f"expected version {event.expected_version}, but the entity does not exist",
            )
        if event.expected_version != state.version:
            return (
                CONFLICT,
                f"expected version {event.expected_version}, but stored is {state.version}",
            )
        return None

    def __repr__(self) -> str:
        return f"VersionedUpdateCore(mode={self._mode!r}, ttl_ms={self._ttl_ms!r})"


@dataclass(frozen=True, slots=True)
class VersionedSimulation:
    """The result of :func:`simulate`.

    :param outcomes: one outcome per input event, in input order.
    :param final: the final state per key (keys whose state expired are absent).
    """

    outcomes: list[Outcome]
    final: dict[str, VersionState]

    def counts(self) -> dict[str, int]:
        """Return ``{kind: count}`` for every kind (zeros included)."""
        result = dict.fromkeys(KINDS, 0)
        for o in self.outcomes:
            result[o.kind] += 1
        return result

    def applied(self) -> list[ChangeEvent]:
        """Return the applied events in order (what the job emits)."""
        return [o.event for o in self.outcomes if o.kind == APPLIED]


def simulate(
    events: Iterable[ChangeEvent],
    mode: str,
    *,
    ttl_ms: int | None = None,
    now_ms: Iterable[int] | None = None,
) -> VersionedSimulation:
    """Run :class:`VersionedUpdateCore` over events with in-memory keyed state.

    :param events: the events in arrival order.
    :param mode: as for :class:`VersionedUpdateCore`.
    :param ttl_ms: as for :class:`VersionedUpdateCore`.
    :param now_ms: the processing time of each event; default 0 for all.
    :return: outcomes and final state.
    :raises ValueError: on an invalid mode/TTL, or if ``now_ms`` has a
        different length from ``events``.
    """
    core = VersionedUpdateCore(mode, ttl_ms)
    state: KeyedMemoryStore[StateTuple] = KeyedMemoryStore()
    event_list = list(events)
    times = [0] * len(event_list) if now_ms is None else list(now_ms)
    if len(times) != len(event_list):
        raise ValueError(f"now_ms has {len(times)} entries for {len(event_list)} events")
    outcomes = [
        core.apply(state.for_key(e.key), e, t) for e, t in zip(event_list, times, strict=True)
    ]
    final = {k: VersionState.from_tuple(v) for k, v in state.snapshot().items()}
    return VersionedSimulation(outcomes, final)

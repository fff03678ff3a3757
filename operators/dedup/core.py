"""Deduplication core: pass the first occurrence of each identity, drop repeats.

The adapter keys the stream by the record identity
(:func:`onceflow.operators.dedup.identity.identity_of`) and, per record, calls
:meth:`DedupCore.process` with that key's ``ValueState[int]``. The state holds
the processing-time millisecond at which the identity was *first seen*.

Guarantees and their limits, precisely:

* **Horizon.** With ``ttl_ms=None`` every identity is remembered forever: a
  record passes exactly once per distinct identity. With ``ttl_ms=T`` an
  identity is remembered for ``T`` ms after the record that last *passed*; a
  duplicate arriving at ``now_ms - first_seen < T`` is dropped, one arriving at
  ``now_ms - first_seen >= T`` passes again (it is then indistinguishable from
  a new id) and restarts the horizon. Duplicates do not extend the horizon.
* **Processing time.** ``now_ms`` is the operator's processing time (wall
  clock), not event time: a producer retry that reaches Flink more than ``T``
  after the original is not caught, however close their event timestamps.
  The same holds after a long outage: state written before it expires by wall
  clock. If the clock steps backwards (``now_ms < first_seen``) the record is
  treated as a duplicate, which errs on the side of dropping.
* **State size.** About (distinct identities seen within one horizon) x
  (per-entry size: the key, i.e. the identity string, plus an 8-byte long and
  the backend's per-entry overhead). With ``ttl_ms=None`` it grows without bound
  with the number of distinct identities.
* **Exactly-once.** The core is a deterministic function of (state, now_ms);
  Flink checkpoints the state with the source offsets, so after failover the
  replayed records see the state as of the checkpoint and make the same
  decisions, and the transactional sink discards the aborted output.

TTL: the adapter configures Flink state TTL of ``ttl_ms`` with update type
``OnCreateAndWrite`` and ``NeverReturnExpired`` so the backend reclaims the
space. The core repeats the expiry check itself, so behaviour is identical
whether or not the backend has cleaned the entry yet (cleanup is lazy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from onceflow.operators.state import KeyedMemoryStore, ValueStore

__all__ = ["DedupCore", "DedupStats", "simulate"]


def _check_ttl(ttl_ms: int | None) -> None:
    if ttl_ms is None:
        return
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(
            f"ttl_ms must be a positive int (milliseconds) or None for no horizon, got {ttl_ms!r}"
        )


class DedupCore:
    """Decide, per record, whether its identity is new within the horizon.

    :param ttl_ms: the horizon in processing-time milliseconds, or ``None`` to
        remember every identity forever.
    :raises ValueError: if ``ttl_ms`` is not a positive int or ``None``.
    """

    __slots__ = ("_ttl_ms",)

    def __init__(self, ttl_ms: int | None) -> None:
        _check_ttl(ttl_ms)
        self._ttl_ms = ttl_ms

    @property
    def ttl_ms(self) -> int | None:
        """The horizon in milliseconds (``None``: unbounded)."""
        return self._ttl_ms

    def process(self, store: ValueStore[int], now_ms: int) -> bool:
        """Process one record whose key's state is ``store``.

        :param store: the value state of the record's identity; holds the
            first-seen time in ms, or ``None``.
        :param now_ms: the current processing time in ms.
        :return: ``True`` if the record is the first occurrence within the
            horizon (it must be emitted; ``now_ms`` is recorded as first-seen),
            ``False`` if it is a duplicate (it must be dropped; state unchanged).
        """
        first_seen = store.get()
        if first_seen is not None and (self._ttl_ms is None or now_ms - first_seen < self._ttl_ms):
            return False
        # New, or expired: an expired entry is indistinguishable from a new id.
        store.put(now_ms)
        return True

    def __repr__(self) -> str:
        return f"DedupCore(ttl_ms={self._ttl_ms!r})"


@dataclass(slots=True)
class DedupStats:
    """Counters of a dedup run: ``seen == passed + duplicates + rejected``.

    :param seen: every record looked at.
    :param passed: records emitted (first occurrences within the horizon).
    :param duplicates: records dropped as duplicates.
    :param rejected: records sent to the dead-letter topic (no identity).
    """

    seen: int = 0
    passed: int = 0
    duplicates: int = 0
    rejected: int = 0

    def count(self, passed: bool) -> None:
        """Count a record that had an identity.

        :param passed: the result of :meth:`DedupCore.process`.
        """
        self.seen += 1
        if passed:
            self.passed += 1
        else:
            self.duplicates += 1

    def count_rejected(self) -> None:
        """Count a record that was rejected before deduplication."""
        self.seen += 1
        self.rejected += 1

    @property
    def consistent(self) -> bool:
        """Whether every record seen is counted exactly once."""
        return self.seen == self.passed + self.duplicates + self.rejected

    def merged(self, other: DedupStats) -> DedupStats:
        """Return the sum of two counters (e.g. over parallel subtasks)."""
        return DedupStats(
            self.seen + other.seen,
            self.passed + other.passed,
            self.duplicates + other.duplicates,
            self.rejected + other.rejected,
        )

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict (for JSON reports)."""
        return asdict(self)


def simulate(
    records: Iterable[tuple[str, int]],
    ttl_ms: int | None,
    *,
    stats: DedupStats | None = None,
) -> list[int]:
    """Run :class:`DedupCore` over ``(identity, now_ms)`` pairs with in-memory state.

    Equivalent to the Flink job with parallelism 1 and no failures (with
    failures too, as far as the committed output goes).

    :param records: ``(identity, now_ms)`` in arrival order.
    :param ttl_ms: the horizon, as for :class:`DedupCore`.
    :param stats: if given, counters to update.
    :return: the indexes (into ``records``) of the records that pass, ascending.
    :raises ValueError: if ``ttl_ms`` is invalid.
    """
    core = DedupCore(ttl_ms)
    state: KeyedMemoryStore[int] = KeyedMemoryStore()
    passed: list[int] = []
    for index, (key, now_ms) in enumerate(records):
        ok = core.process(state.for_key(key), now_ms)
        if stats is not None:
            stats.count(ok)
        if ok:
            passed.append(index)
    return passed

"""The keyed-state interface a pure operator core sees, and in-memory stores.

A core is handed one :class:`ValueStore` per record: the value state of the
record's key, exactly like a Flink ``ValueState`` inside a
``KeyedProcessFunction`` (the runtime has already scoped it to the current key).
The PyFlink adapter wraps ``ValueState`` with this protocol; tests and
simulations use :class:`MemoryValueStore` and :class:`KeyedMemoryStore`.

Guarantees: the in-memory stores are not checkpointed and not thread-safe; they
exist so that a core behaves identically in a test and in Flink, where the
durability (checkpointed with the source offsets, restored on failover) comes
from the state backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "FlinkValueStore",
    "KeyedMemoryStore",
    "MemoryValueStore",
    "ValueStore",
    "value_state_descriptor",
]

T = TypeVar("T")


class ValueStore(Protocol[T]):
    """A single value of keyed state, scoped to the current key.

    Mirrors Flink's ``ValueState``: ``get`` returns ``None`` when nothing is
    stored (never written, cleared, or expired by state TTL).
    """

    def get(self) -> T | None:
        """Return the stored value, or ``None`` when the slot is empty."""
        ...

    def put(self, value: T) -> None:
        """Replace the stored value (``ValueState.update``).

        :param value: the new value; it is visible to the next ``get`` and, in
            Flink, part of the next checkpoint.
        """
        ...

    def clear(self) -> None:
        """Empty the slot; the next ``get`` returns ``None``."""
        ...


class MemoryValueStore(Generic[T]):
    """A single-slot, in-memory :class:`ValueStore` for tests.

    Like Flink's ``ValueState.update(None)``, putting ``None`` is the same as
    :meth:`clear`: an empty slot and a slot holding ``None`` are
    indistinguishable through :meth:`get`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T | None = None) -> None:
        """:param value: an initial value, or ``None`` for an empty slot."""
        self._value: T | None = value

    def get(self) -> T | None:
        """Return the stored value, or ``None`` when the slot is empty."""
        return self._value

    def put(self, value: T) -> None:
        """Replace the stored value.

        :param value: the new value.
        """
        self._value = value

    def clear(self) -> None:
        """Empty the slot."""
        self._value = None

    def __repr__(self) -> str:
        return f"MemoryValueStore({self._value!r})"


class KeyedMemoryStore(Generic[T]):
    """Keyed in-memory state: one :class:`MemoryValueStore` per key.

    Plays the role of Flink's keyed state backend in tests and simulations:
    ``for_key(k)`` is the ``ValueState`` a ``KeyedProcessFunction`` sees while
    processing a record keyed by ``k``.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[str, MemoryValueStore[T]] = {}

    def for_key(self, key: str) -> MemoryValueStore[T]:
        """Return the value store of ``key``, creating an empty one if needed.

        :param key: the record key (what the job passes to ``key_by``).
        :return: the same store object on every call with the same key.
        """
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = MemoryValueStore()
        return slot

    def snapshot(self) -> dict[str, T]:
        """Return ``{key: value}`` for every non-empty slot (a copy)."""
        return {k: v for k, s in self._slots.items() if (v := s.get()) is not None}

    def __len__(self) -> int:
        """The number of keys currently holding a value (the state size in entries)."""
        return sum(1 for s in self._slots.values() if s.get() is not None)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the keys currently holding a value."""
        return iter([k for k, s in self._slots.items() if s.get() is not None])


class FlinkValueStore(Generic[T]):
    """:class:`ValueStore` over a PyFlink ``ValueState`` (duck-typed: no pyflink import).

    :param state: the ``ValueState`` from ``RuntimeContext.get_state``.
    :param decode: turns what the state returns (e.g. a Java-converted tuple or
        int) into the core's value type.
    """

    def __init__(self, state: Any, decode: Callable[[Any], T]) -> None:
        self._state = state
        self._decode = decode

    def get(self) -> T | None:
        value = self._state.value()
        return None if value is None else self._decode(value)

    def put(self, value: T) -> None:
        self._state.update(value)

    def clear(self) -> None:
        self._state.clear()


def value_state_descriptor(name: str, type_info: Any, ttl_ms: int | None) -> Any:
    """A PyFlink ``ValueStateDescriptor``, with state TTL when ``ttl_ms`` is set.

    The TTL mirrors the cores' horizons: only a write (or the first one)
    refreshes a key's clock, and an expired value is never returned (it reads
    as absent, like a key never seen). pyflink is imported here, not at module
    level, so the cores and their tests stay free of it.
    """
    from pyflink.common.time import Time
    from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

    descriptor = ValueStateDescriptor(name, type_info)
    if ttl_ms is not None:
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build()
        )
        descriptor.enable_time_to_live(ttl)
    return descriptor

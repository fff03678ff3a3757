"""How the operators key a user's records: a column in the JVM, or a function in Python.

Either way the key is text (``str`` of the value), the same for every
occurrence of the entity, and the empty key marks a record without one (the
operator makes it a dead letter and touches no state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyflink.datastream import KeySelector

from onceflow.errors import OnceflowError
from onceflow.operators.records import sql_unicode_safe
from onceflow.streams import field_names, key_in_jvm

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, KeyedStream

__all__ = ["NO_KEY", "FieldOf", "key_records", "key_rows_by_column"]

NO_KEY = ""
"""The key of a record without one: the operator turns it into a dead letter."""


class FieldOf:
    """A field of a user's object: a dict's item or an attribute (None when absent)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, record: Any) -> Any:
        if isinstance(record, dict):
            return record.get(self.name)
        return getattr(record, self.name, None)


def key_rows_by_column(stream: DataStream, column: str, *, uid: str) -> KeyedStream:
    """A Row stream keyed in the JVM by ``column`` as text (records gain the key first).

    :raises OnceflowError: when ``column`` is not a field of the rows.
    """
    from pyflink.common import Types

    names = field_names(stream) or ()
    if column not in names:
        raise OnceflowError(f"{column!r} is not a field of the stream's rows {list(names)}")
    kinds = dict(zip(names, stream.get_type().get_field_types(), strict=True))
    text = f"CAST(`{column}` AS STRING)"
    if kinds[column] == Types.STRING():
        # A lone surrogate cannot cross into Python (see sql_unicode_safe).
        text = sql_unicode_safe(text)
    return key_in_jvm(stream, f"COALESCE({text}, '{NO_KEY}')", uid=f"{uid}-key")


def key_records(stream: DataStream, key: Callable[[Any], Any]) -> KeyedStream:
    """Any stream keyed in Python by ``str(key(record))``."""
    from pyflink.common import Types

    return stream.key_by(_RecordKey(key), key_type=Types.STRING())


class _RecordKey(KeySelector):
    """Never raises: a key function that fails or returns None gives :data:`NO_KEY`."""

    def __init__(self, key: Callable[[Any], Any]) -> None:
        self.key = key

    def get_key(self, value: Any) -> str:
        try:
            found = self.key(value)
        except Exception:  # noqa: BLE001 - a failing key function makes a dead letter
            return NO_KEY
        return NO_KEY if found is None else str(found)

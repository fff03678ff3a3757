"""Declared record schemas: one declaration gives the Flink row type, the stream's
type info and the Arrow schema, which must agree.

Shared by the operators (rows they emit to a side output) and the sinks (the
Parquet files they write), below both in the import order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["COLUMN_TYPES", "Column", "RecordSchema"]

COLUMN_TYPES: Final = ("STRING", "BIGINT", "INT", "BOOLEAN", "DOUBLE", "BYTES")
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Column:
    """One column of a :class:`RecordSchema`.

    :param name: a SQL-style identifier (letters, digits, ``_``).
    :param type: one of :data:`COLUMN_TYPES` (case-insensitive).
    :param nullable: whether the column may hold nulls; a null in a
        non-nullable column fails the writer (and so the job).
    """

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise OnceflowError(
                f"column name {self.name!r} is not an identifier (letters, digits, '_', "
                "not starting with a digit)"
            )
        kind = str(self.type).upper()
        if kind not in COLUMN_TYPES:
            raise OnceflowError(
                f"column {self.name!r} has type {self.type!r}; use one of {', '.join(COLUMN_TYPES)}"
            )
        object.__setattr__(self, "type", kind)


@dataclass(frozen=True)
class RecordSchema:
    """The declared columns of a Parquet file sink, in order.

    One declaration gives the three views that must agree: the Parquet
    ``RowType`` (:meth:`row_type`), the ``RowTypeInfo`` of the stream that feeds
    the sink (:meth:`type_info`) and the Arrow schema readers use
    (:meth:`arrow_schema`). Rows are matched to columns by position.

    :param columns: at least one column; names must be unique.
    """

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        cols = tuple(self.columns)
        if not cols:
            raise OnceflowError("a record schema needs at least one column")
        if not all(isinstance(c, Column) for c in cols):
            raise OnceflowError("record schema columns must be Column instances")
        names = [c.name for c in cols]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise OnceflowError(f"record schema repeats column names: {', '.join(dupes)}")
        object.__setattr__(self, "columns", cols)

    @classmethod
    def of(cls, *columns: tuple[str, str] | tuple[str, str, bool]) -> RecordSchema:
        """``RecordSchema.of(("key", "STRING", False), ("version", "BIGINT"))``."""
        return cls(tuple(Column(*spec) for spec in columns))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def row_type(self) -> Any:
        """The Flink ``RowType`` for ``ParquetBulkWriters.for_row_type``."""
        from pyflink.table import DataTypes

        def data_type(column: Column) -> Any:
            factory = {
                "STRING": DataTypes.STRING,
                "BIGINT": DataTypes.BIGINT,
                "INT": DataTypes.INT,
                "BOOLEAN": DataTypes.BOOLEAN,
                "DOUBLE": DataTypes.DOUBLE,
                "BYTES": DataTypes.BYTES,
            }[column.type]
            return factory(nullable=column.nullable)

        return DataTypes.ROW([DataTypes.FIELD(c.name, data_type(c)) for c in self.columns])

    def type_info(self) -> Any:
        """The ``RowTypeInfo`` a DataStream feeding this sink must be declared with."""
        from pyflink.common import Types

        infos = {
            "STRING": Types.STRING,
            "BIGINT": Types.LONG,
            "INT": Types.INT,
            "BOOLEAN": Types.BOOLEAN,
            "DOUBLE": Types.DOUBLE,
            "BYTES": lambda: Types.PRIMITIVE_ARRAY(Types.BYTE()),
        }
        return Types.ROW_NAMED(self.names, [infos[c.type]() for c in self.columns])

    def arrow_schema(self) -> pa.Schema:
        """The schema pyarrow reads the files with."""
        import pyarrow as pa

        arrow = {
            "STRING": pa.string(),
            "BIGINT": pa.int64(),
            "INT": pa.int32(),
            "BOOLEAN": pa.bool_(),
            "DOUBLE": pa.float64(),
            "BYTES": pa.binary(),
        }
        return pa.schema([pa.field(c.name, arrow[c.type], c.nullable) for c in self.columns])

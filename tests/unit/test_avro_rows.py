"""The Flink Row type of an Avro reader schema, and the schemas refused at start."""

from __future__ import annotations

from typing import Any

import pytest
from pyflink.common import Types

from onceflow.errors import OnceflowError
from onceflow.runtime.kafka_avro import avro_row_type


def _record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": list(fields)}


def test_primitives_and_nullable_unions_map_to_flink_columns_in_order() -> None:
    schema = _record(
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "seq", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "late", "type": ["long", "null"], "default": 0},
    )
    row = avro_row_type(schema)
    assert row.get_field_names() == ["id", "n", "seq", "f", "d", "ok", "raw", "note", "late"]
    assert row.get_field_types() == [
        Types.STRING(),
        Types.INT(),
        Types.LONG(),
        Types.FLOAT(),
        Types.DOUBLE(),
        Types.BOOLEAN(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.STRING(),
        Types.LONG(),
    ]


@pytest.mark.parametrize(
    "kind",
    [
        {"type": "array", "items": "string"},
        {"type": "map", "values": "long"},
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "long", "logicalType": "timestamp-millis"},
        ["null", "string", "long"],
        {"type": "record", "name": "Inner", "fields": [{"name": "y", "type": "int"}]},
    ],
)
def test_unsupported_field_types_are_refused_with_what_to_change(kind: Any) -> None:
    with pytest.raises(OnceflowError, match=r"field 'x'.*--reader-schema"):
        avro_row_type(_record({"name": "x", "type": kind}))


def test_a_schema_that_is_not_a_record_or_not_avro_is_refused() -> None:
    with pytest.raises(OnceflowError, match="must be an Avro record"):
        avro_row_type('"string"')
    with pytest.raises(OnceflowError, match="not a valid Avro schema"):
        avro_row_type({"type": "record", "name": "R", "fields": [{"name": "x", "type": "nope"}]})

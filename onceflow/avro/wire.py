"""The Confluent wire format for Avro, and a decoder that never raises on bad bytes.

A framed record is ``0x00`` (the magic byte), the writer schema's registry id as a 4-byte
big-endian signed integer, then the record in Avro binary encoding (no container file
header). :func:`frame` / :func:`unframe` handle the five header bytes; :class:`AvroEncoder`
writes records; :class:`AvroDecoder` turns any bytes a topic can hold into either a
:class:`Decoded` record or a :class:`DecodeFailure` with a stable reason:

- :data:`NOT_FRAMED`: a null value, or fewer than 5 bytes (no room for the header);
- :data:`BAD_MAGIC`: the first byte is not 0 (JSON text, another serializer's framing);
- :data:`UNKNOWN_SCHEMA`: the registry knows no Avro schema by that id (negative ids,
  ids never assigned, ids of JSON Schema or Protobuf schemas);
- :data:`UNDECODABLE`: the body does not decode with its writer schema: truncated, garbage,
  a negative length, a union branch out of range, invalid UTF-8 in a string (a lone
  surrogate included), or bytes left over after the record;
- :data:`INCOMPATIBLE_SCHEMA`: the writer schema cannot be read as the reader schema the
  consumer declared (Avro schema resolution failed);
- :data:`OVERSIZE`: more bytes than the consumer accepts (checked before decoding).

A registry that cannot answer is *not* a reason: :meth:`AvroDecoder.decode` lets
:class:`~onceflow.avro.registry.RegistryUnavailable` through, so a caller retries or fails
instead of dead-lettering good records while the registry is down.

Pure apart from the schema lookup it is given; fastavro does the Avro binary coding.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from onceflow.errors import OnceflowError

__all__ = [
    "BAD_MAGIC",
    "DECODE_REASONS",
    "HEADER_BYTES",
    "INCOMPATIBLE_SCHEMA",
    "MAGIC_BYTE",
    "NOT_FRAMED",
    "OVERSIZE",
    "UNDECODABLE",
    "UNKNOWN_SCHEMA",
    "AvroDecoder",
    "AvroEncoder",
    "DecodeFailure",
    "Decoded",
    "SchemaLookup",
    "frame",
    "parse_schema",
    "unframe",
]

MAGIC_BYTE: Final = 0
HEADER_BYTES: Final = 5
_HEADER: Final = struct.Struct(">bi")

NOT_FRAMED: Final = "not_framed"
"""A null value, or fewer bytes than the 5-byte header."""
BAD_MAGIC: Final = "bad_magic"
"""The first byte is not the magic byte 0."""
UNKNOWN_SCHEMA: Final = "unknown_schema"
"""The framing names a schema id the registry does not know as an Avro schema."""
UNDECODABLE: Final = "undecodable"
"""The body is not one record of the writer schema, exactly."""
INCOMPATIBLE_SCHEMA: Final = "incompatible_schema"
"""The writer schema cannot be resolved to the consumer's reader schema."""
OVERSIZE: Final = "oversize"
"""Larger than the consumer accepts (the same reason the JSON path uses)."""

DECODE_REASONS: Final = (
    NOT_FRAMED,
    BAD_MAGIC,
    UNKNOWN_SCHEMA,
    UNDECODABLE,
    INCOMPATIBLE_SCHEMA,
    OVERSIZE,
)

SchemaLookup = Callable[[int], "tuple[str, str] | None"]
"""``lookup(schema_id) -> (schema_type, schema_text)`` or None when the id is unknown;
raises (e.g. ``RegistryUnavailable``) when it cannot tell. A bound
``SchemaRegistry.schema`` adapted by :meth:`AvroDecoder.from_registry` is one."""


def parse_schema(schema: str | Mapping[str, Any]) -> Any:
    """A fastavro parsed schema from Avro schema text or its JSON object.

    :raises OnceflowError: the schema is not valid Avro.
    """
    import fastavro

    try:
        obj = json.loads(schema) if isinstance(schema, str) else dict(schema)
        return fastavro.parse_schema(obj)
    except Exception as exc:  # noqa: BLE001 - fastavro raises several types for bad schemas
        raise OnceflowError(f"not a valid Avro schema: {exc}") from exc


def frame(schema_id: int, body: bytes) -> bytes:
    """The Confluent framing of an Avro binary ``body`` written with ``schema_id``."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(raw: bytes | None) -> tuple[int, bytes] | DecodeFailure:
    """``(schema_id, body)`` of a framed value, or why it is not framed."""
    if raw is None:
        return DecodeFailure(NOT_FRAMED, "null value")
    if len(raw) < HEADER_BYTES:
        return DecodeFailure(NOT_FRAMED, f"{len(raw)} bytes, fewer than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(raw)
    if magic != MAGIC_BYTE:
        return DecodeFailure(BAD_MAGIC, f"first byte 0x{raw[0]:02x}, not the magic byte 0x00")
    return schema_id, raw[HEADER_BYTES:]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A record that decoded: its fields (as the reader schema shapes them) and the id
    of the schema it was written with."""

    record: Any
    schema_id: int


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why bytes are not a record.

    :param reason: one of :data:`DECODE_REASONS`; stable, for machines.
    :param detail: what exactly is wrong, for humans; may change between releases.
    """

    reason: str
    detail: str


class AvroEncoder:
    """Writes records of one schema, framed with its registry id.

    Deterministic: equal records give equal bytes (what a duplicate must be).

    :param schema: the writer schema (text or JSON object).
    :param schema_id: the id the registry gave it.
    """

    def __init__(self, schema: str | Mapping[str, Any], schema_id: int) -> None:
        self.schema = parse_schema(schema)
        self.schema_id = schema_id
        self._header = _HEADER.pack(MAGIC_BYTE, schema_id)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The framed bytes of ``record``.

        :raises ValueError: the record does not match the schema (fastavro's message).
        """
        import fastavro

        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self.schema, dict(record))
        return out.getvalue()


class AvroDecoder:
    """Decodes framed records, fetching each writer schema once by its id.

    :param lookup: the writer schema of an id (see :data:`SchemaLookup`).
    :param reader_schema: the schema the consumer reads with (Avro schema resolution:
        added fields take their defaults, removed ones are skipped); None reads each
        record as written.
    :param max_bytes: values longer than this are :data:`OVERSIZE`; None accepts any size.
    """

    def __init__(
        self,
        lookup: SchemaLookup,
        reader_schema: str | Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._lookup = lookup
        self.reader_schema = parse_schema(reader_schema) if reader_schema is not None else None
        self.max_bytes = max_bytes
        self._writers: dict[int, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_registry(
        cls,
        registry: Any,
        reader_schema: str | Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> AvroDecoder:
        """A decoder whose writer schemas come from a
        :class:`~onceflow.avro.registry.SchemaRegistry`."""

        def lookup(schema_id: int) -> tuple[str, str] | None:
            found = registry.schema(schema_id)
            return None if found is None else (found.schema_type, found.text)

        return cls(lookup, reader_schema, max_bytes)

    def _writer(self, schema_id: int) -> Any | DecodeFailure:
        with self._lock:
            known = self._writers.get(schema_id)
        if known is not None:
            return known
        found = self._lookup(schema_id)  # RegistryUnavailable passes through: no verdict
        if found is None:
            return DecodeFailure(UNKNOWN_SCHEMA, f"schema id {schema_id} is not registered")
        schema_type, text = found
        if schema_type.upper() != "AVRO":
            return DecodeFailure(
                UNKNOWN_SCHEMA, f"schema id {schema_id} is a {schema_type} schema, not Avro"
            )
        try:
            parsed = parse_schema(text)
        except OnceflowError as exc:
            return DecodeFailure(UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}")
        with self._lock:
            self._writers[schema_id] = parsed
        return parsed

    def decode(self, raw: bytes | None) -> Decoded | DecodeFailure:
        """The record in ``raw``, or why there is none. Never raises on bad bytes.

        :raises RegistryUnavailable: (from the lookup) the writer schema could not be
            fetched; the record is neither good nor bad yet.
        """
        if raw is not None and self.max_bytes is not None and len(raw) > self.max_bytes:
            return DecodeFailure(OVERSIZE, f"{len(raw)} bytes > {self.max_bytes}")
        framed = unframe(raw)
        if isinstance(framed, DecodeFailure):
            return framed
        schema_id, body = framed
        writer = self._writer(schema_id)
        if isinstance(writer, DecodeFailure):
            return writer
        return self._read(schema_id, writer, body)

    def _read(self, schema_id: int, writer: Any, body: bytes) -> Decoded | DecodeFailure:
        import fastavro
        from fastavro.read import SchemaResolutionError

        buf = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(buf, writer, self.reader_schema)
        except SchemaResolutionError as exc:
            return DecodeFailure(
                INCOMPATIBLE_SCHEMA, f"schema id {schema_id} cannot be read as declared: {exc}"
            )
        except Exception as exc:  # noqa: BLE001 - any failure to decode is a verdict on the bytes
            return DecodeFailure(
                UNDECODABLE, f"body of schema id {schema_id}: {type(exc).__name__}: {exc}"
            )
        left = len(body) - buf.tell()
        if left:
            return DecodeFailure(
                UNDECODABLE, f"{left} bytes left after a record of schema id {schema_id}"
            )
        return Decoded(record, schema_id)

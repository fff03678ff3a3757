"""Hostile Kafka record values, one per class of input a topic can hold.

Every job must either pass such a record or write it to its dead-letter topic
with the expected reason, exactly once, and keep running. Each :class:`Case`
is named after the class it stands for and says, per job, what the record is
(``dedup``: the id lives in ``id``; ``versioned``: a change event with ``key``,
``version`` and ``payload``) and what must happen to it: :data:`PASS` (the
dedup job writes it out under its id; the versioned job applies it) or the
dead-letter reason.

The records are unique within the corpus (ids and keys differ between cases),
so a run of the whole corpus has exactly one expected outcome per record. The
size classes assume the jobs run with ``--max-record-bytes``
:data:`MAX_RECORD_BYTES`; :data:`NEAR_BROKER_LIMIT` is close to Kafka's default
``max.message.bytes`` (1,048,588), so its dead letter (base64 grows it by a
third) is over any DLQ topic's default limit and must be truncated.

:func:`avro_cases` holds the Avro classes (Confluent framing: magic byte, schema id,
Avro binary body) of the dedup job's record ``{id, seq, ts, payload}``
(:data:`AVRO_SCHEMA`), as bytes built for the schema ids a registry gave; the expected
outcome is :data:`PASS`, the reason of :mod:`onceflow.avro.wire`'s decoder, or the
dedup job's id reason for a record that decodes but breaks the id contract. Each case
says, where they differ, what Flink's ``avro-confluent`` format (2.2.0) does with it.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from onceflow.avro.wire import (
    BAD_MAGIC,
    INCOMPATIBLE_SCHEMA,
    NOT_FRAMED,
    UNDECODABLE,
    UNKNOWN_SCHEMA,
)
from onceflow.operators.records import (
    AMBIGUOUS_KEY,
    BAD_OP,
    EMPTY_FIELD,
    INVALID_UNICODE,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    NULL_FIELD,
    OUT_OF_RANGE,
    OVERSIZE,
    TOO_DEEP,
    WRONG_TYPE,
)

__all__ = [
    "AVRO_EVOLVED_SCHEMA",
    "AVRO_INCOMPATIBLE_SCHEMA",
    "AVRO_SCHEMA",
    "AvroIds",
    "AvroCase",
    "avro_cases",
    "CORPUS",
    "MAX_RECORD_BYTES",
    "NEAR_BROKER_LIMIT",
    "PASS",
    "Case",
    "Record",
    "cases_for",
]

PASS: Final = "pass"
MAX_RECORD_BYTES: Final = 65_536
NEAR_BROKER_LIMIT: Final = 1_040_000


Record = tuple[bytes | None, str]
"""A job's record (None: a Kafka null value) and what must happen to it."""


@dataclass(frozen=True)
class Case:
    """One class of hostile input and what each job must do with it.

    :param name: the class it stands for.
    :param dedup: the dedup job's record and outcome; None when the class does
        not apply to that job.
    :param versioned: the versioned upsert job's record and outcome, or None.
    """

    name: str
    dedup: Record | None
    versioned: Record | None


def _ids(name: str, ident: bytes, expect: str, *, extra: bytes = b"") -> Case:
    """A class about the id/key itself: ``{"id": ident}`` and ``{"key": ident, ...}``."""
    payload = b',"version":1,"payload":{"c":"' + name.encode() + b'"}'
    return Case(
        name,
        (b'{"id":' + ident + extra + b"}", expect),
        (b'{"key":' + ident + payload + extra + b"}", expect),
    )


def _whole(name: str, raw: bytes | None, expect: str) -> Case:
    """A class about the value as a whole: the same bytes and outcome for both jobs."""
    return Case(name, (raw, expect), (raw, expect))


def _dedup(name: str, raw: bytes, expect: str) -> Case:
    return Case(name, (raw, expect), None)


def _versioned(name: str, raw: bytes, expect: str) -> Case:
    return Case(name, None, (raw, expect))


def _padded(name: str, size: int, expect: str) -> Case:
    """A valid record of exactly ``size`` bytes (padding in a string member)."""

    def build(head: bytes) -> bytes:
        pad = size - len(head) - len(b',"pad":""}')
        return head + b',"pad":"' + b"x" * pad + b'"}'

    dedup = build(b'{"id":"' + name.encode() + b'"')
    versioned = build(b'{"key":"' + name.encode() + b'","version":1,"payload":{}')
    assert len(dedup) == size and len(versioned) == size
    return Case(name, (dedup, expect), (versioned, expect))


def _arrays(depth: int) -> bytes:
    """Empty arrays nested ``depth`` deep."""
    return b"[" * depth + b"]" * depth


CORPUS: Final[tuple[Case, ...]] = (
    # --- bytes that are not UTF-8
    _whole("not_utf8_outside_strings", b'{\xff"id":"nu-out"}', NOT_JSON),
    _ids("not_utf8_inside_string", b'"nu-in\xfe\xff"', NOT_JSON),
    _ids("overlong_encoding_of_slash", b'"ov-\xc0\xaf"', NOT_JSON),
    _ids("overlong_encoding_of_nul", b'"ov-\xc0\x80"', NOT_JSON),
    _ids("truncated_multibyte_sequence", b'"tr-\xe2\x82"', NOT_JSON),
    _ids("utf8_encoded_surrogate_cesu", b'"cesu-\xed\xa0\x80"', NOT_JSON),
    _whole("latin1_text", '{"id":"latin-\u00e9"}'.encode("latin-1"), NOT_JSON),
    # --- JSON that is not Unicode: lone surrogate escapes
    _ids("lone_high_surrogate_in_id", b'"ls-\\ud800"', INVALID_UNICODE),
    _ids("lone_low_surrogate_in_id", b'"ls-\\udc00"', INVALID_UNICODE),
    _ids("reversed_surrogate_pair_in_id", b'"ls-\\udc00\\ud800"', INVALID_UNICODE),
    _ids("high_surrogate_at_end_of_id", b'"ls-end\\udbff"', INVALID_UNICODE),
    Case(
        "lone_surrogate_nested_in_payload",
        (b'{"id":"ls-nested","payload":{"a":[{"b":"\\ud800x"}]}}', PASS),
        (b'{"key":"ls-nested","version":1,"payload":{"a":[{"b":"\\ud800x"}]}}', PASS),
    ),
    Case(
        "lone_surrogate_as_member_name",
        (b'{"id":"ls-name","payload":{"\\udfff":1}}', PASS),
        (b'{"key":"ls-name","version":1,"payload":{"\\udfff":1}}', PASS),
    ),
    _ids("valid_surrogate_pair_escape_in_id", b'"pair-\\ud83d\\ude00"', PASS),
    _ids("four_byte_utf8_in_id", '"emoji-\U0001f600"'.encode(), PASS),
    _ids("noncharacter_escape_in_id", b'"nonchar-\\uffff"', PASS),
    # --- not strict JSON
    _whole("utf8_bom_before_json", b'\xef\xbb\xbf{"id":"bom"}', NOT_JSON),
    _whole("trailing_garbage", b'{"id":"trail"} xyz', NOT_JSON),
    _whole("two_objects", b'{"id":"two-1"}{"id":"two-2"}', NOT_JSON),
    _whole("block_comment", b'{"id":"comment" /* c */}', NOT_JSON),
    _whole("line_comment", b'{"id":"comment2"} // c', NOT_JSON),
    _whole("single_quotes", b"{'id':'single'}", NOT_JSON),
    _whole("unquoted_member_name", b'{id:"unquoted"}', NOT_JSON),
    _whole("trailing_comma", b'{"id":"comma",}', NOT_JSON),
    _whole("raw_control_char_in_string", b'{"id":"ctl\tx"}', NOT_JSON),
    _whole("invalid_escape", b'{"id":"esc\\x41"}', NOT_JSON),
    _whole("nan_literal", b'{"id":"nan","x":NaN}', NOT_JSON),
    _whole("leading_zero_number", b'{"id":"lz","x":01}', NOT_JSON),
    _whole("empty_value", b"", NOT_JSON),
    _whole("whitespace_only", b" \n\t ", NOT_JSON),
    _whole("tombstone_null_value", None, NOT_JSON),
    # --- JSON, but not an object
    _whole("top_level_array", b'[{"id":"arr"}]', NOT_OBJECT),
    _whole("top_level_string", b'"just a string"', NOT_OBJECT),
    _whole("top_level_null", b"null", NOT_OBJECT),
    _whole("top_level_number", b"12345", NOT_OBJECT),
    # --- nesting (the parser's limit is 100 levels, the record object included)
    _whole(
        "deep_nesting_far_past_any_limit",
        b'{"id":"deep","key":"deep","version":1,"payload":' + _arrays(30_000) + b"}",
        TOO_DEEP,
    ),
    _ids("nesting_at_the_limit", b'"depth-100"', PASS, extra=b',"x":' + _arrays(99)),
    _ids("nesting_one_past_the_limit", b'"depth-101"', TOO_DEEP, extra=b',"x":' + _arrays(100)),
    # --- duplicate members: the JVM and Python both keep the last one, or it is a dead letter
    _dedup("duplicate_id_members", b'{"id":"dup-first","id":"dup-last"}', PASS),
    _dedup("duplicate_id_object_then_string", b'{"id":{"a":1},"id":"dup-obj"}', PASS),
    _versioned(
        "duplicate_key_members",
        b'{"key":"dupk-first","key":"dupk-last","version":1,"payload":{}}',
        PASS,
    ),
    _versioned(
        "duplicate_key_object_then_string",
        b'{"key":{"a":1},"key":"dupk-obj","version":1,"payload":{}}',
        PASS,
    ),
    _versioned(
        "duplicate_version_members", b'{"key":"dupv","version":"x","version":3,"payload":{}}', PASS
    ),
    # --- numbers
    _ids("number_overflowing_a_double_as_id", b"1e400", NOT_JSON),
    _whole("number_overflowing_a_double_elsewhere", b'{"id":"dbl","x":-1e400}', NOT_JSON),
    _ids("integer_overflowing_a_long_as_id", b"123456789012345678901234567890", PASS),
    _ids("integer_just_past_long_max_as_id", b"9223372036854775808", PASS),
    # Longer than the JVM parser's number limit (1,000 digits): the JVM has no key.
    _ids("integer_longer_than_the_jvm_number_limit", b"7" * 2000, AMBIGUOUS_KEY),
    _ids("negative_zero_as_id", b"-0", PASS),
    _ids("float_with_zero_fraction_as_id", b"1001.0", WRONG_TYPE),
    _ids("exponent_integer_as_id", b"1E3", WRONG_TYPE),
    _ids("negative_integer_as_id", b"-42", PASS),
    # --- strings with special characters
    _ids("escaped_nul_in_id", b'"nul-\\u0000-x"', PASS),
    _ids("line_separator_escape_in_id", b'"ls2028-\\u2028"', PASS),
    _ids("raw_line_separator_in_id", '"raw2028-\u2028"'.encode(), PASS),
    _ids("quote_backslash_slash_in_id", b'"q-\\"-\\\\-\\/"', PASS),
    _ids("long_id_50kb", b'"long-' + b"y" * 50_000 + b'"', PASS),
    # --- ids and keys of the wrong type
    _ids("id_is_object", b'{"a":"obj"}', WRONG_TYPE),
    _ids("id_is_array", b'["arr-id"]', WRONG_TYPE),
    _ids("id_is_boolean", b"true", WRONG_TYPE),
    _ids("id_is_null", b"null", NULL_FIELD),
    _ids("id_is_empty_string", b'""', EMPTY_FIELD),
    Case(
        "id_missing",
        (b'{"other":"x"}', MISSING_FIELD),
        (b'{"version":1,"payload":{}}', MISSING_FIELD),
    ),
    # --- versions and change fields (the versioned job only)
    _versioned(
        "version_overflowing_a_long",
        b'{"key":"vo","version":9223372036854775808,"payload":{}}',
        OUT_OF_RANGE,
    ),
    _versioned("version_negative", b'{"key":"vn","version":-1,"payload":{}}', OUT_OF_RANGE),
    _versioned("version_as_string", b'{"key":"vs","version":"1","payload":{}}', WRONG_TYPE),
    _versioned("version_with_fraction", b'{"key":"vf","version":1.0,"payload":{}}', WRONG_TYPE),
    _versioned("version_boolean", b'{"key":"vb","version":true,"payload":{}}', WRONG_TYPE),
    _versioned("payload_is_array", b'{"key":"pa","version":1,"payload":[1]}', WRONG_TYPE),
    _versioned("unknown_op", b'{"key":"op","version":1,"op":"merge","payload":{}}', BAD_OP),
    # --- sizes (jobs run with --max-record-bytes MAX_RECORD_BYTES)
    _padded("size_at_the_limit", MAX_RECORD_BYTES, PASS),
    _padded("size_one_past_the_limit", MAX_RECORD_BYTES + 1, OVERSIZE),
    _padded("size_near_the_broker_limit", NEAR_BROKER_LIMIT, OVERSIZE),
)
"""Every class, in the order they are produced."""


def cases_for(job: str) -> list[tuple[str, bytes | None, str]]:
    """``(name, record, expected)`` of every case that applies to ``job``
    (``dedup`` or ``versioned``), in corpus order."""
    out: list[tuple[str, bytes | None, str]] = []
    for case in CORPUS:
        record = case.dedup if job == "dedup" else case.versioned
        if record is not None:
            out.append((case.name, *record))
    return out


# ------------------------------------------------------------------------------ Avro

AVRO_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "HostileRecord",
    "namespace": "dev.onceflow.corpus",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "ts", "type": "long"},
        {"name": "payload", "type": "string"},
    ],
}
"""The dedup job's record, and the reader schema the corpus is decoded with."""

AVRO_EVOLVED_SCHEMA: Final[dict[str, Any]] = {
    **AVRO_SCHEMA,
    "fields": [
        *AVRO_SCHEMA["fields"],
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
"""A compatible next version: an optional field added."""

AVRO_INCOMPATIBLE_SCHEMA: Final[dict[str, Any]] = {
    **AVRO_SCHEMA,
    "fields": [{"name": "id", "type": "long"}, *AVRO_SCHEMA["fields"][1:]],
}
"""An incompatible writer: the id is a long, which a string reader cannot take."""


@dataclass(frozen=True)
class AvroIds:
    """The registry ids the Avro cases are framed with.

    :param schema: of :data:`AVRO_SCHEMA`.
    :param evolved: of :data:`AVRO_EVOLVED_SCHEMA`.
    :param incompatible: of :data:`AVRO_INCOMPATIBLE_SCHEMA`.
    :param json_schema: of a JSON Schema (not Avro) registered in the same registry.
    :param unknown: an id the registry does not hold.
    """

    schema: int
    evolved: int
    incompatible: int
    json_schema: int
    unknown: int


@dataclass(frozen=True)
class AvroCase:
    """One class of hostile Avro input: the record and what the dedup job must do."""

    name: str
    raw: bytes | None
    expect: str
    flink: str = "passes"
    """What Flink's ``avro-confluent`` format (flink-sql-avro-confluent-registry 2.2.0,
    Kafka table connector, Apicurio 3.0.9) did with it, between two valid records, when
    run here; it has no option to skip a record it cannot read."""


def _zigzag(n: int) -> bytes:
    """Avro's long encoding (zigzag, then base-128 varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _avro_string(raw: bytes) -> bytes:
    return _zigzag(len(raw)) + raw


def _body(ident: bytes, seq: int = 1, payload: bytes = b"p") -> bytes:
    """The Avro binary body of ``{id, seq, ts, payload}`` (the id as raw UTF-8 bytes)."""
    return _avro_string(ident) + _zigzag(seq) + _zigzag(seq * 10) + _avro_string(payload)


def _framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bi", 0, schema_id) + body


def _evolved_body(ident: bytes) -> bytes:
    return _body(ident) + _zigzag(1) + _avro_string(b"new")  # union branch 1: string


def _padded_avro(schema_id: int, ident: bytes, size: int) -> bytes:
    """A valid record of exactly ``size`` bytes (the payload pads it)."""
    head = _framed(schema_id, _body(ident, payload=b""))
    pad = size - len(head)
    for _ in range(3):  # the payload's length prefix grows with it
        raw = _framed(schema_id, _body(ident, payload=b"x" * pad))
        pad -= len(raw) - size
    raw = _framed(schema_id, _body(ident, payload=b"x" * pad))
    assert len(raw) == size
    return raw


def avro_cases(ids: AvroIds) -> list[AvroCase]:
    """Every Avro class, framed with ``ids``; ids and bytes differ between cases."""
    s = ids.schema
    good = _framed(s, _body(b"av-good"))
    ghost = _body(b"av-ghost", 666)
    fails = "fails the job: "
    return [
        # --- records that pass
        AvroCase("avro_valid", good, PASS),
        AvroCase("avro_unicode_id", _framed(s, _body("av-\u043a\U0001f600".encode())), PASS),
        AvroCase(
            "avro_evolved_writer_optional_field",
            _framed(ids.evolved, _evolved_body(b"av-evolved")),
            PASS,
        ),
        AvroCase(
            "avro_varint_longer_than_10_bytes",
            _framed(s, _avro_string(b"av-varint") + b"\xff" * 10 + b"\x01" + _zigzag(1) + b"\x00"),
            PASS,
            flink=fails + "InvalidNumberEncodingException: Invalid long encoding "
            "(fastavro wraps the value instead)",
        ),
        # --- no framing
        AvroCase("avro_null_value", None, NOT_FRAMED, flink="skipped: no row, no error"),
        AvroCase("avro_empty_value", b"", NOT_FRAMED, flink=fails + "EOFException"),
        AvroCase("avro_header_cut", b"\x00\x00\x00\x01", NOT_FRAMED, flink=fails + "EOFException"),
        AvroCase(
            "avro_json_text",
            b'{"id":"av-json"}',
            BAD_MAGIC,
            flink=fails + "Unknown data format. Magic number does not match",
        ),
        AvroCase(
            "avro_magic_byte_one",
            b"\x01" + good[1:-1] + b"q",
            BAD_MAGIC,
            flink=fails + "Unknown data format. Magic number does not match",
        ),
        # --- schema ids
        AvroCase(
            "avro_unknown_schema_id",
            _framed(ids.unknown, _body(b"av-unknown")),
            UNKNOWN_SCHEMA,
            flink=fails + "No content with ID ...; error code: 40403",
        ),
        AvroCase(
            "avro_negative_schema_id",
            _framed(-1, _body(b"av-negative")),
            UNKNOWN_SCHEMA,
            flink=fails + "the registry is asked for id -1 (40403)",
        ),
        AvroCase(
            "avro_id_of_a_json_schema",
            _framed(ids.json_schema, _body(b"av-jsonschema")),
            UNKNOWN_SCHEMA,
            flink=fails + "Invalid schema ... of type JSON",
        ),
        AvroCase(
            "avro_incompatible_writer_schema",
            _framed(ids.incompatible, _zigzag(42) + _zigzag(1) + _zigzag(10) + _avro_string(b"p")),
            INCOMPATIBLE_SCHEMA,
            flink=fails + "AvroTypeException: Found long, expecting union",
        ),
        # --- framing fine, body not one record
        AvroCase("avro_header_only", _framed(s, b""), UNDECODABLE, flink=fails + "EOFException"),
        AvroCase(
            "avro_truncated_body",
            _framed(s, _body(b"av-truncated", payload=b"abcdef"))[:-3],
            UNDECODABLE,
            flink=fails + "EOFException",
        ),
        AvroCase(
            "avro_garbage_body",
            _framed(s, b"\xff" * 16),
            UNDECODABLE,
            flink=fails + "InvalidNumberEncodingException: Invalid long encoding",
        ),
        AvroCase(
            "avro_negative_string_length",
            _framed(s, _zigzag(-1) + b"av-neg"),
            UNDECODABLE,
            flink=fails + "Malformed data. Length is negative: -1",
        ),
        AvroCase(
            "avro_trailing_bytes",
            _framed(s, _body(b"av-trailing")) + b"\x00\x00",
            UNDECODABLE,
            flink="passes; the left-over bytes are read as the start of the NEXT record, "
            "which then fails the job (Malformed data. Length is negative)",
        ),
        AvroCase(
            "avro_record_smuggled_after_a_record",
            _framed(s, _body(b"av-carrier")) + ghost,
            UNDECODABLE,
            flink="passes; the next record's row is the smuggled record and every later row "
            "is one record late, silently (FLINK-31951/FLINK-34474: a reused decoder buffer)",
        ),
        AvroCase(
            "avro_invalid_utf8_in_id",
            _framed(s, _body(b"av-\xff\xfe")),
            UNDECODABLE,
            flink="passes with U+FFFD in place of each bad byte (distinct ids can collide)",
        ),
        AvroCase(
            "avro_utf8_encoded_surrogate_in_id",
            _framed(s, _body(b"av-\xed\xa0\x80")),
            UNDECODABLE,
            flink="passes with U+FFFD in place of the bytes",
        ),
        # --- decodes, but breaks the dedup job's id contract (the format passes it)
        AvroCase("avro_empty_id", _framed(s, _body(b"", 7)), EMPTY_FIELD),
        # --- sizes (the dedup job runs with --max-record-bytes MAX_RECORD_BYTES)
        AvroCase("avro_size_at_the_limit", _padded_avro(s, b"av-limit", MAX_RECORD_BYTES), PASS),
        AvroCase(
            "avro_size_one_past_the_limit",
            _padded_avro(s, b"av-past", MAX_RECORD_BYTES + 1),
            OVERSIZE,
            flink="passes: the format has no size limit",
        ),
    ]


def avro_encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The Avro binary body of ``record`` (fastavro), for checking the hand-made bytes."""
    import fastavro

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(json.dumps(schema))), record)
    return out.getvalue()

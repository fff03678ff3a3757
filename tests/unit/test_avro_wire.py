"""The Confluent wire format and the decoder's classification of hostile Avro input.

Pure Python: the registry is a dict (``lookup``); the ITs run the same bytes against
Apicurio and Flink.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hostile_corpus import (
    AVRO_EVOLVED_SCHEMA,
    AVRO_INCOMPATIBLE_SCHEMA,
    AVRO_SCHEMA,
    MAX_RECORD_BYTES,
    PASS,
    AvroIds,
    avro_cases,
    avro_encode,
)

from onceflow.avro.registry import RegistryUnavailable
from onceflow.avro.wire import (
    BAD_MAGIC,
    DECODE_REASONS,
    NOT_FRAMED,
    OVERSIZE,
    UNDECODABLE,
    UNKNOWN_SCHEMA,
    AvroDecoder,
    AvroEncoder,
    Decoded,
    DecodeFailure,
    frame,
    unframe,
)
from onceflow.errors import OnceflowError
from onceflow.operators.records import EMPTY_FIELD, REASONS
from onceflow.testing.workload import valid_id

IDS = AvroIds(schema=1, evolved=2, incompatible=3, json_schema=4, unknown=99)
REGISTRY = {
    1: ("AVRO", json.dumps(AVRO_SCHEMA)),
    2: ("AVRO", json.dumps(AVRO_EVOLVED_SCHEMA)),
    3: ("AVRO", json.dumps(AVRO_INCOMPATIBLE_SCHEMA)),
    4: ("JSON", '{"type": "object"}'),
}


class Lookup:
    """A registry as a dict, counting the lookups."""

    def __init__(self, schemas: dict[int, tuple[str, str]]) -> None:
        self.schemas = schemas
        self.calls: Counter[int] = Counter()

    def __call__(self, schema_id: int) -> tuple[str, str] | None:
        self.calls[schema_id] += 1
        return self.schemas.get(schema_id)


def decoder(**kwargs: object) -> AvroDecoder:
    return AvroDecoder(Lookup(REGISTRY), AVRO_SCHEMA, **kwargs)  # type: ignore[arg-type]


def dedup_outcome(dec: AvroDecoder, raw: bytes | None) -> str:
    """What the dedup job must do: the decoder's reason, or the id contract's."""
    got = dec.decode(raw)
    if isinstance(got, DecodeFailure):
        return got.reason
    ident = got.record["id"]
    if ident == "":
        return EMPTY_FIELD
    assert valid_id(ident)
    return PASS


def test_every_avro_case_is_classified_as_the_corpus_expects() -> None:
    dec = decoder(max_bytes=MAX_RECORD_BYTES)
    wrong = [
        f"{c.name}: {dedup_outcome(dec, c.raw)} != {c.expect}"
        for c in avro_cases(IDS)
        if dedup_outcome(dec, c.raw) != c.expect
    ]
    assert not wrong, wrong


def test_the_avro_corpus_is_broad_named_and_unique() -> None:
    cases = avro_cases(IDS)
    names = [c.name for c in cases]
    assert len(set(names)) == len(names)
    raws = Counter(c.raw for c in cases)
    assert max(raws.values()) == 1, [r for r, n in raws.items() if n > 1]
    outcomes = {c.expect for c in cases}
    # Every decoder reason but incompatible-by-resolution-of-a-field is covered, and more.
    assert set(DECODE_REASONS) <= outcomes
    assert outcomes <= {PASS, EMPTY_FIELD, *DECODE_REASONS}
    assert OVERSIZE in REASONS  # the decoder's oversize is the JSON path's reason


def test_hand_made_valid_records_are_what_an_avro_writer_writes() -> None:
    by_name = {c.name: c for c in avro_cases(IDS)}
    record = {"id": "av-good", "seq": 1, "ts": 10, "payload": "p"}
    assert by_name["avro_valid"].raw == frame(1, avro_encode(AVRO_SCHEMA, record))
    assert by_name["avro_valid"].raw == AvroEncoder(AVRO_SCHEMA, 1).encode(record)
    evolved = {"id": "av-evolved", "seq": 1, "ts": 10, "payload": "p", "note": "new"}
    assert by_name["avro_evolved_writer_optional_field"].raw == frame(
        2, avro_encode(AVRO_EVOLVED_SCHEMA, evolved)
    )


def test_an_evolved_writer_is_read_as_the_reader_schema_declares() -> None:
    with_note = AvroEncoder(AVRO_EVOLVED_SCHEMA, 2).encode(
        {"id": "x", "seq": 1, "ts": 2, "payload": "p", "note": "n"}
    )
    assert decoder().decode(with_note) == Decoded({"id": "x", "seq": 1, "ts": 2, "payload": "p"}, 2)
    # Without a reader schema, the record is read as written.
    as_written = AvroDecoder(Lookup(REGISTRY)).decode(with_note)
    assert isinstance(as_written, Decoded) and as_written.record["note"] == "n"


def test_framing_round_trips_and_refuses_what_is_not_framed() -> None:
    assert unframe(frame(7, b"body")) == (7, b"body")
    assert unframe(frame(-1, b"")) == (-1, b"")
    assert unframe(frame(2**31 - 1, b"x")) == (2**31 - 1, b"x")
    for raw in (None, b"", b"\x00", b"\x00\x00\x00\x01"):
        got = unframe(raw)
        assert isinstance(got, DecodeFailure) and got.reason == NOT_FRAMED
    got = unframe(b"\x7b\x00\x00\x00\x01")
    assert isinstance(got, DecodeFailure) and got.reason == BAD_MAGIC and "0x7b" in got.detail


def test_writer_schemas_are_fetched_once_per_id_and_unknown_ids_are_asked_again() -> None:
    lookup = Lookup(REGISTRY)
    dec = AvroDecoder(lookup, AVRO_SCHEMA)
    enc = AvroEncoder(AVRO_SCHEMA, 1)
    for i in range(50):
        assert isinstance(
            dec.decode(enc.encode({"id": f"k{i}", "seq": i, "ts": i, "payload": ""})), Decoded
        )
    unknown = frame(99, b"")
    for _ in range(3):
        got = dec.decode(unknown)
        assert isinstance(got, DecodeFailure) and got.reason == UNKNOWN_SCHEMA
    assert lookup.calls == Counter({1: 1, 99: 3})


def test_a_registry_that_cannot_answer_is_no_verdict() -> None:
    def down(schema_id: int) -> tuple[str, str] | None:
        raise RegistryUnavailable("the schema registry is not reachable")

    dec = AvroDecoder(down, AVRO_SCHEMA)
    with pytest.raises(RegistryUnavailable):
        dec.decode(frame(1, b"\x02a\x02\x04\x00"))


def test_oversize_is_decided_before_any_lookup() -> None:
    lookup = Lookup(REGISTRY)
    dec = AvroDecoder(lookup, AVRO_SCHEMA, max_bytes=10)
    got = dec.decode(frame(1, b"\x00" * 6))
    assert isinstance(got, DecodeFailure) and got.reason == OVERSIZE
    assert not lookup.calls


def test_encoding_is_deterministic_and_refuses_records_off_the_schema() -> None:
    enc = AvroEncoder(AVRO_SCHEMA, 5)
    record = {"payload": "p", "ts": 2, "seq": 1, "id": "same"}  # field order is irrelevant
    assert enc.encode(record) == enc.encode(dict(reversed(list(record.items()))))
    with pytest.raises((ValueError, TypeError)):
        enc.encode({"id": 1, "seq": 1, "ts": 2, "payload": "p"})


def test_an_invalid_schema_is_refused_with_a_clear_error() -> None:
    with pytest.raises(OnceflowError, match="not a valid Avro schema"):
        AvroEncoder({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}, 1)
    # A writer schema in the registry that is not valid Avro is an unknown schema.
    dec = AvroDecoder(Lookup({8: ("AVRO", "{not json")}))
    got = dec.decode(frame(8, b""))
    assert isinstance(got, DecodeFailure) and got.reason == UNKNOWN_SCHEMA


def test_bytes_left_after_a_record_are_undecodable() -> None:
    good = AvroEncoder(AVRO_SCHEMA, 1).encode({"id": "a", "seq": 1, "ts": 1, "payload": ""})
    got = decoder().decode(good + b"\x00")
    assert isinstance(got, DecodeFailure) and got.reason == UNDECODABLE
    assert "1 bytes left" in got.detail

"""The dedup workload (:mod:`onceflow.testing.workload`) in Avro, Confluent-framed.

Same spec, same records, same order, same kinds and ids as the JSON workload: each valid
record ``{id, seq, ts, payload}`` is written with :func:`workload_schema` and framed with
the schema's registry id, so a duplicate is again byte-identical to its original. Malformed
records are Avro's own hostile classes instead of JSON's, rotating through
:data:`AVRO_MALFORMED_REASONS` (the reasons of :mod:`onceflow.avro.wire`); the JSON
workload's ``oversize`` records stay where they are, as well-formed Avro records over the
size limit.

Pure apart from the schema id the caller obtained from a registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

from onceflow.avro.wire import (
    BAD_MAGIC,
    NOT_FRAMED,
    OVERSIZE,
    UNDECODABLE,
    UNKNOWN_SCHEMA,
    AvroEncoder,
    frame,
)
from onceflow.testing.workload import WorkItem, WorkloadSpec, generate

__all__ = [
    "AVRO_MALFORMED_REASONS",
    "UNKNOWN_SCHEMA_ID_BASE",
    "avro_items",
    "workload_schema",
]

#: Reasons of the malformed Avro records, in the order the generator rotates through them
#: (``oversize`` is placed where the JSON workload places it).
AVRO_MALFORMED_REASONS: Final = (NOT_FRAMED, BAD_MAGIC, UNKNOWN_SCHEMA, UNDECODABLE)

#: ``unknown_schema`` records carry ids from here up (a registry assigns ids from 1; it
#: would take two billion registrations to reach these).
UNKNOWN_SCHEMA_ID_BASE: Final = 2_000_000_000

_AVRO_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def workload_schema(id_field: str = "id") -> dict[str, Any]:
    """The Avro schema of the workload's valid records.

    :raises ValueError: ``id_field`` is not an Avro field name (a dotted path is not:
        the Avro workload keeps its id at the top level).
    """
    if not _AVRO_NAME.match(id_field) or id_field in ("seq", "ts", "payload"):
        raise ValueError(
            f"id field {id_field!r} cannot be a field of the Avro workload: use a top-level "
            "name of letters, digits and '_' other than seq, ts and payload"
        )
    return {
        "type": "record",
        "name": "WorkloadRecord",
        "namespace": "dev.onceflow.workload",
        "fields": [
            {"name": id_field, "type": "string"},
            {"name": "seq", "type": "long"},
            {"name": "ts", "type": "long"},
            {"name": "payload", "type": "string"},
        ],
    }


def avro_items(spec: WorkloadSpec, schema_id: int) -> Iterator[WorkItem]:
    """The records of ``spec`` in Avro, framed with ``schema_id``, lazily.

    Guarantees those of :func:`~onceflow.testing.workload.generate` (counts, order,
    duplicates byte-identical, deterministic), and every malformed record decodes to its
    ``malformed_reason`` with :class:`~onceflow.avro.wire.AvroDecoder` reading through a
    registry that holds ``schema_id`` (and no id from :data:`UNKNOWN_SCHEMA_ID_BASE` on).

    :param schema_id: the id a registry gave :func:`workload_schema` (``spec.id_field``).
    :raises ValueError: the spec's id field cannot be an Avro field.
    """
    encoder = AvroEncoder(workload_schema(spec.id_field), schema_id)
    rotating = 0
    for seq, item in enumerate(generate(spec)):
        if item.kind != "malformed":
            yield WorkItem(encoder.encode(json.loads(item.value)), item.kind, item.ident)
        elif item.malformed_reason == "oversize":
            # A well-formed record with a fresh id: only its size is wrong.
            yield WorkItem(encoder.encode(json.loads(item.value)), "malformed", None, OVERSIZE)
        else:
            reason = AVRO_MALFORMED_REASONS[rotating % len(AVRO_MALFORMED_REASONS)]
            variant = rotating // len(AVRO_MALFORMED_REASONS)
            value = _malformed(encoder, reason, variant, seq, spec.id_field)
            rotating += 1
            yield WorkItem(value, "malformed", None, reason)


def _malformed(encoder: AvroEncoder, reason: str, variant: int, seq: int, id_field: str) -> bytes:
    """A malformed Avro record for ``reason``; ``seq`` keeps each one distinct."""
    record = {id_field: f"bad-{seq:08d}", "seq": seq, "ts": seq, "payload": ""}
    good = encoder.encode(record)
    if reason == NOT_FRAMED:
        # Shorter than the header: a magic byte and three bytes of an id.
        return bytes([0]) + (seq % (1 << 24)).to_bytes(3, "big")
    if reason == BAD_MAGIC:
        return [
            json.dumps(record, separators=(",", ":")).encode(),  # a JSON producer's record
            bytes([1]) + good[1:],  # another framing's version byte
        ][variant % 2]
    if reason == UNKNOWN_SCHEMA:
        return frame(UNKNOWN_SCHEMA_ID_BASE + seq % 100_000_000, good[5:])
    if reason == UNDECODABLE:
        return [
            good[: len(good) - 3],  # truncated inside the record
            good[:5] + b"\xff" * 16 + seq.to_bytes(8, "big"),  # framing, then garbage
            good + seq.to_bytes(4, "big"),  # bytes left after the record
        ][variant % 3]
    raise AssertionError(f"unknown malformed reason {reason!r}")

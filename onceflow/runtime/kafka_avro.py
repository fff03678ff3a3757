"""Avro records from and to Kafka: Confluent framing, writer schemas from a registry.

Flink's ``avro-confluent`` format cannot be put on a topic that may hold hostile bytes: it
fails the job on a record it cannot read (a poison pill) and can silently shift records
when bytes trail one (see the README). So :func:`read_kafka_avro` reads each value as raw
bytes with its position, through the same ``KafkaSource`` table as
:func:`~onceflow.runtime.kafka_source.read_kafka_json`, and decodes it with
:class:`~onceflow.avro.wire.AvroDecoder` in one Python step that emits either a typed Row
of the reader schema or a dead letter. Each record crosses into Python once for this.

Guarantees: those of the Kafka source (offsets in checkpoints, read_committed). Bytes
that are not one record of a registered writer schema readable as the reader schema
become dead letters (``not_framed``, ``bad_magic``, ``unknown_schema``, ``undecodable``,
``incompatible_schema``, ``oversize``) in the JSON dead-letter document, keyed by the
source position: never a crash. A registry that cannot answer is not a verdict on the
bytes: the task fails and Flink restarts it from the last checkpoint.

:func:`encode_avro` turns Rows back into framed Avro ``Row(key, v)`` for
:func:`~onceflow.sinks.kafka.write_kafka`, with a writer schema registered by
:func:`register_value_schema` before the job starts, under the subject of a naming
strategy (:mod:`onceflow.avro.subjects`) and after the registry's compatibility check.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pyflink.datastream import MapFunction, ProcessFunction

from onceflow.avro.registry import RegistryError, SchemaRegistry
from onceflow.avro.subjects import RECORD, TOPIC, subject_name
from onceflow.avro.wire import AvroDecoder, AvroEncoder, DecodeFailure, parse_schema
from onceflow.errors import OnceflowError
from onceflow.operators.records import DEAD_LETTER_MAX_BYTES, Rejected, dead_letter_record
from onceflow.runtime.kafka_source import KafkaSourceSpec, read_kafka_json
from onceflow.streams import field_names, kafka_record_type, side_output

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, OutputTag, StreamExecutionEnvironment

__all__ = [
    "AvroRecords",
    "avro_row_type",
    "check_value_schema",
    "encode_avro",
    "load_reader_schema",
    "read_kafka_avro",
    "register_value_schema",
]

log = logging.getLogger(__name__)

_JAVA_EXCEPTION: Final = re.compile(r"^(?:[\w$]+\.)+\w*(?:Exception|Error): ")
_PRIMITIVES: Final = ("string", "int", "long", "float", "double", "boolean", "bytes")


@dataclass(frozen=True)
class AvroRecords:
    """The outputs of :func:`read_kafka_avro`.

    :param records: Rows of the reader schema (:func:`avro_row_type`), field for field.
    :param dead_letters: ``Row(key, v)``: the dead-letter document of each value that is
        not a record, keyed by its source ``topic/partition/offset``.
    """

    records: DataStream
    dead_letters: DataStream


def _field_kind(record: str, field: Mapping[str, Any]) -> str:
    """The Avro primitive a field holds (a nullable union counts as its other branch)."""
    name, kind = field.get("name"), field.get("type")
    if isinstance(kind, list):
        branches = [b for b in kind if b != "null"]
        if len(kind) == 2 and len(branches) == 1:
            kind = branches[0]
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return kind
    raise OnceflowError(
        f"Avro record {record!r}, field {name!r}: type {json.dumps(kind)} has no Flink column "
        f"here; onceflow reads fields of the primitives {list(_PRIMITIVES)} or a union of null "
        "and one of them (no logical types, records, arrays, maps, enums or fixed): declare "
        "a reader schema (--reader-schema) that leaves such fields out or reads them as one "
        "of these"
    )


def avro_row_type(schema: str | Mapping[str, Any]) -> Any:
    """The Flink Row type of an Avro record schema: one column per field, in order.

    ``string`` -> STRING, ``int`` -> INT, ``long`` -> BIGINT, ``float`` -> FLOAT,
    ``double`` -> DOUBLE, ``boolean`` -> BOOLEAN, ``bytes`` -> BYTES; ``["null", T]``
    is T (Flink columns are nullable).

    :raises OnceflowError: the schema is not valid Avro, not a record, or has a field of
        another type, with what to change.
    """
    from pyflink.common import Types

    parse_schema(schema)  # refuses invalid Avro with fastavro's reason
    obj = json.loads(schema) if isinstance(schema, str) else dict(schema)
    if not isinstance(obj, dict) or obj.get("type") != "record":
        raise OnceflowError(
            "the reader schema must be an Avro record (one Row per value); wrap the value "
            "in a record schema"
        )
    flink = {
        "string": Types.STRING(),
        "int": Types.INT(),
        "long": Types.LONG(),
        "float": Types.FLOAT(),
        "double": Types.DOUBLE(),
        "boolean": Types.BOOLEAN(),
        "bytes": Types.PRIMITIVE_ARRAY(Types.BYTE()),
    }
    record = str(obj.get("name"))
    fields = obj.get("fields") or []
    if not fields:
        raise OnceflowError(f"Avro record {record!r} has no fields: nothing to read")
    names = [str(f["name"]) for f in fields]
    return Types.ROW_NAMED(names, [flink[_field_kind(record, f)] for f in fields])


def load_reader_schema(
    registry_url: str,
    topic: str,
    reader_schema: str | Mapping[str, Any] | None,
    subject_strategy: str = TOPIC,
) -> dict[str, Any]:
    """The reader schema: the one given, or the latest of the topic's subject.

    With :data:`~onceflow.avro.subjects.TOPIC` the subject is ``<topic>-value``; with
    ``topic-record`` it is the one subject ``<topic>-<namespace>.<name>`` the registry
    holds for the topic; ``record`` subjects do not name the topic, so that strategy
    needs the reader schema given.

    :raises OnceflowError: no schema given and no subject to read it from (or several),
        or the registry cannot answer.
    """
    if reader_schema is not None:
        return json.loads(reader_schema) if isinstance(reader_schema, str) else dict(reader_schema)
    registry = SchemaRegistry(registry_url)
    subject = _input_subject(registry, topic, subject_strategy)
    latest = registry.latest(subject)
    if latest is None:
        raise OnceflowError(
            f"the registry has no subject {subject!r} to read {topic!r} with: register the "
            "producer's schema there or pass the reader schema (--reader-schema FILE)"
        )
    if latest.schema.schema_type.upper() != "AVRO":
        raise OnceflowError(f"subject {subject!r} holds a {latest.schema.schema_type} schema")
    loaded: dict[str, Any] = json.loads(latest.schema.text)
    return loaded


def _input_subject(registry: SchemaRegistry, topic: str, strategy: str) -> str:
    """The subject holding ``topic``'s value schema when no reader schema is given."""
    if strategy == TOPIC:
        return subject_name(strategy, topic, None)
    if strategy == RECORD:
        raise OnceflowError(
            f"with the record subject strategy the subject of {topic!r} is its record's "
            "name, which the topic does not tell: pass the reader schema (--reader-schema FILE)"
        )
    subject_name(strategy, topic, {"type": "record", "name": "x"})  # refuses an unknown one
    prefix = f"{topic}-"
    found = sorted(s for s in registry.subjects() if s.startswith(prefix) and s != f"{topic}-value")
    if len(found) != 1:
        raise OnceflowError(
            f"the registry holds {len(found)} topic-record subjects for {topic!r} "
            f"({found[:5]}): pass the reader schema (--reader-schema FILE)"
        )
    return found[0]


def register_value_schema(
    registry_url: str,
    topic: str,
    schema: Mapping[str, Any],
    subject_strategy: str = TOPIC,
) -> int:
    """Check ``schema`` against its subject's latest version, register it, return its id.

    The subject follows ``subject_strategy`` (:func:`~onceflow.avro.subjects.subject_name`).
    The check asks the registry's compatibility endpoint first, so an incompatible schema
    is refused before the job starts, with the subject, its compatibility level and the
    registry's reason. Registering is idempotent (the same schema keeps its id).

    :raises OnceflowError: the schema is incompatible with the subject (one line: what to
        change), the registry refused it otherwise, or cannot answer.
    """
    subject = subject_name(subject_strategy, topic, schema)
    registry = SchemaRegistry(registry_url)
    check_value_schema(registry, subject, schema)
    try:
        return registry.register(subject, dict(schema))
    except RegistryError as exc:
        if exc.status != 409:
            raise
        # Accepted by the check, refused on registering: the subject changed meanwhile.
        raise _incompatible(registry, subject, schema, [exc.reason]) from exc


def check_value_schema(registry: SchemaRegistry, subject: str, schema: Mapping[str, Any]) -> None:
    """Refuse ``schema`` when the registry says ``subject``'s compatibility rule forbids it.

    A registry whose verdict carries no reason (Apicurio 3.0) is asked to register the
    schema to get one: it refuses (409) with the incompatible fields and registers
    nothing.

    :raises OnceflowError: incompatible: one line with the subject, its level (when the
        registry tells it), the registry's reason and what to change.
    """
    verdict = registry.check_compatibility(subject, dict(schema))
    if verdict.compatible:
        return
    reasons = list(verdict.messages)
    if not reasons:
        try:
            registry.register(subject, dict(schema))
        except RegistryError as exc:
            reasons = [exc.reason] if exc.status == 409 else []
        else:
            return  # the rule accepted it after all (changed between the two calls)
    raise _incompatible(registry, subject, schema, reasons)


def _incompatible(
    registry: SchemaRegistry, subject: str, schema: Mapping[str, Any], reasons: list[str]
) -> OnceflowError:
    level = registry.compatibility_level(subject)
    # One line: the registry's reasons without Java exception class names or newlines.
    why = "; ".join(_JAVA_EXCEPTION.sub("", " ".join(r.split())) for r in reasons if r)
    return OnceflowError(
        f"the Avro schema {schema.get('name')!r} is not compatible with subject {subject!r}"
        f" (compatibility {level or 'unknown'}) in the schema registry: "
        f"{why or 'the registry gave no reason'}; make the change compatible (a new field "
        "needs a default, a field keeps its type), write to another subject "
        "(--subject-strategy or another topic) or relax the subject's compatibility "
        f"(PUT /config/{subject})"
    )


class _DecodeAvro(ProcessFunction):
    """Raw values with positions -> Rows of the reader schema, or dead letters."""

    def __init__(
        self,
        registry_url: str,
        reader_schema: Mapping[str, Any],
        max_record_bytes: int | None,
        dead_letters: OutputTag,
        dead_letter_max_bytes: int,
    ) -> None:
        self.registry_url = registry_url
        self.reader_schema = dict(reader_schema)
        self.max_record_bytes = max_record_bytes
        self.dead_letters = dead_letters
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.names = [str(f["name"]) for f in self.reader_schema["fields"]]
        self.decoder: AvroDecoder | None = None

    def open(self, runtime_context: Any) -> None:
        registry = SchemaRegistry(self.registry_url)
        self.decoder = AvroDecoder.from_registry(
            registry, self.reader_schema, self.max_record_bytes
        )

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Any:
        from pyflink.common import Row

        raw, topic, partition, offset = value[0], value[1], value[2], value[3]
        assert self.decoder is not None
        raw = None if raw is None else bytes(raw)
        # RegistryUnavailable passes: no verdict on the bytes, the task restarts.
        decoded = self.decoder.decode(raw)
        if isinstance(decoded, DecodeFailure):
            why = Rejected(decoded.reason, decoded.detail)
            key, letter = dead_letter_record(
                raw, why, topic, partition, offset, self.dead_letter_max_bytes
            )
            yield self.dead_letters, Row(key, letter)
            return
        record = decoded.record
        yield Row(*(record.get(name) for name in self.names))


def read_kafka_avro(
    env: StreamExecutionEnvironment,
    spec: KafkaSourceSpec,
    registry_url: str,
    reader_schema: str | Mapping[str, Any] | None = None,
    *,
    max_record_bytes: int | None = 512 * 1024,
    dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
    subject_strategy: str = TOPIC,
    uid: str = "source",
) -> AvroRecords:
    """Confluent-framed Avro records of a topic as typed Rows, bad bytes as dead letters.

    Each value's writer schema is fetched from the registry by the id in its framing
    (once per id) and resolved to ``reader_schema`` (Avro schema resolution: fields the
    writer lacks take their defaults). The Rows are :func:`avro_row_type` of the reader
    schema, so :func:`~onceflow.operators.dedup.stream.dedup` keys them in the JVM by a
    column.

    :param spec: the topic (read_committed, offsets in checkpoints).
    :param registry_url: the Confluent-compatible API (Apicurio: ``.../apis/ccompat/v7``).
    :param reader_schema: an Avro record schema (text or JSON object); None reads with the
        latest schema of the topic's subject, looked up once, now.
    :param max_record_bytes: larger values are dead letters (``oversize``); None: any.
    :param dead_letter_max_bytes: the largest dead letter (a larger one keeps a prefix).
    :param subject_strategy: where the reader schema is looked up when not given
        (:mod:`onceflow.avro.subjects`); records are decoded by the id in their framing
        whatever subject their schema is under.
    :param uid: the source's uid; the decoder is ``<uid>-avro``.
    :raises OnceflowError: an unsupported reader schema (with what to change), or no
        schema to read with.
    """
    from pyflink.datastream import OutputTag

    schema = load_reader_schema(registry_url, spec.topic, reader_schema, subject_strategy)
    row_type = avro_row_type(schema)
    tag = OutputTag(f"{uid}-avro-dead-letters", kafka_record_type())
    raw = read_kafka_json(env, spec, uid=uid)
    decoder = _DecodeAvro(registry_url, schema, max_record_bytes, tag, dead_letter_max_bytes)
    records = raw.process(decoder, row_type).name(f"{uid}-avro").uid(f"{uid}-avro")
    log.info("reading %s as Avro records %s", spec.topic, schema.get("name"))
    return AvroRecords(records, side_output(records, tag))


class _EncodeAvro(MapFunction):
    """Rows -> ``Row(key, v)``: the key field's text and the framed Avro record."""

    def __init__(
        self,
        schema: Mapping[str, Any],
        schema_id: int,
        names: tuple[str, ...],
        key: str | None,
        delete_op_field: str | None = None,
    ) -> None:
        self.schema = dict(schema)
        self.schema_id = schema_id
        self.names = names
        self.key = key
        self.delete_op_field = delete_op_field
        self.encoder: AvroEncoder | None = None

    def open(self, runtime_context: Any) -> None:
        self.encoder = AvroEncoder(self.schema, self.schema_id)

    def map(self, value: Any) -> Any:
        from pyflink.common import Row

        assert self.encoder is not None
        record = dict(zip(self.names, value, strict=True))
        key = record.get(self.key) if self.key is not None else None
        key_text = None if key is None else str(key)
        if self.delete_op_field is not None and record.get(self.delete_op_field) == "delete":
            return Row(key_text, None)  # a tombstone: compaction removes the key
        return Row(key_text, self.encoder.encode(record))


def encode_avro(
    stream: DataStream,
    schema: Mapping[str, Any],
    schema_id: int | None = None,
    *,
    key_field: str | None = None,
    registry_url: str | None = None,
    topic: str | None = None,
    subject_strategy: str = TOPIC,
    delete_op_field: str | None = None,
    uid: str = "avro-out",
) -> DataStream:
    """Rows as Kafka records ``Row(key, v)``: ``v`` the framed Avro record of ``schema``.

    The Rows must have the schema's fields (e.g. Rows of :func:`read_kafka_avro` written
    with their reader schema). Deterministic: a replayed Row gives the same bytes.

    :param schema_id: the registry's id for ``schema`` (:func:`register_value_schema`);
        None registers it now, before the job runs, under ``topic``'s subject by
        ``subject_strategy`` after the registry's compatibility check.
    :param delete_op_field: a column whose value ``delete`` makes the record a tombstone
        (a null value, for a compacted topic); None: every Row is a record.
    :param key_field: the column whose text is the Kafka key (None: no key).
    :param registry_url: the registry, when ``schema_id`` is None.
    :param topic: the output topic, when ``schema_id`` is None.
    :param subject_strategy: ``topic``, ``record`` or ``topic-record``
        (:mod:`onceflow.avro.subjects`), when ``schema_id`` is None.
    :raises OnceflowError: the stream's fields are not the schema's; no id and nowhere to
        register; an incompatible schema (with what to change).
    """
    names = field_names(stream)
    wanted = tuple(str(f["name"]) for f in schema.get("fields", []))
    if names != wanted:
        raise OnceflowError(
            f"the stream's fields {list(names or ())} are not the Avro schema's {list(wanted)}"
        )
    if key_field is not None and key_field not in wanted:
        raise OnceflowError(f"key field {key_field!r} is not a field of {list(wanted)}")
    if delete_op_field is not None and delete_op_field not in wanted:
        raise OnceflowError(f"op field {delete_op_field!r} is not a field of {list(wanted)}")
    if schema_id is None:
        if registry_url is None or topic is None:
            raise OnceflowError(
                "encode_avro needs the schema's id, or registry_url and topic to register it"
            )
        schema_id = register_value_schema(registry_url, topic, schema, subject_strategy)
    encoder = _EncodeAvro(schema, schema_id, wanted, key_field, delete_op_field)
    return stream.map(encoder, kafka_record_type()).name(uid).uid(uid)

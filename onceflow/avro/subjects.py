"""Subject naming strategies: under which registry subject a topic's value schema lives.

The three strategies of Confluent's serializers, by the names their ``value.subject.name.
strategy`` setting uses, so producers and consumers outside onceflow agree with it:

- :data:`TOPIC` (``TopicNameStrategy``, the default): ``<topic>-value``. One schema
  lineage per topic; compatibility is checked per topic.
- :data:`RECORD` (``RecordNameStrategy``): the record's full name ``<namespace>.<name>``.
  One lineage per record type, shared by every topic that carries it; a topic may hold
  several record types.
- :data:`TOPIC_RECORD` (``TopicRecordNameStrategy``): ``<topic>-<namespace>.<name>``.
  One lineage per record type per topic.

Pure: no registry access.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from onceflow.errors import OnceflowError

__all__ = [
    "RECORD",
    "SUBJECT_STRATEGIES",
    "TOPIC",
    "TOPIC_RECORD",
    "record_full_name",
    "subject_name",
]

TOPIC: Final = "topic"
"""``TopicNameStrategy``: ``<topic>-value``."""
RECORD: Final = "record"
"""``RecordNameStrategy``: ``<namespace>.<name>``."""
TOPIC_RECORD: Final = "topic-record"
"""``TopicRecordNameStrategy``: ``<topic>-<namespace>.<name>``."""

SUBJECT_STRATEGIES: Final = (TOPIC, RECORD, TOPIC_RECORD)


def record_full_name(schema: str | Mapping[str, Any]) -> str:
    """The Avro full name of a record schema: ``namespace.name``, or ``name`` alone.

    A name that already holds a dot is a full name (the Avro spec: its namespace is
    then ignored).

    :raises OnceflowError: the schema is not a named record.
    """
    obj = json.loads(schema) if isinstance(schema, str) else schema
    name = obj.get("name") if isinstance(obj, Mapping) else None
    if not isinstance(obj, Mapping) or obj.get("type") != "record" or not isinstance(name, str):
        raise OnceflowError(
            "the record name strategies name a subject after the value's record "
            "(namespace.name): the schema must be an Avro record with a name"
        )
    if "." in name:
        return name
    namespace = obj.get("namespace")
    return f"{namespace}.{name}" if isinstance(namespace, str) and namespace else name


def subject_name(strategy: str, topic: str, schema: str | Mapping[str, Any] | None) -> str:
    """The subject of ``topic``'s value schema ``schema`` under ``strategy``.

    :param strategy: one of :data:`SUBJECT_STRATEGIES`.
    :param schema: the value's record schema; only the record strategies read it (None
        is accepted with :data:`TOPIC`).
    :raises OnceflowError: an unknown strategy, or a record strategy without a named
        record schema.
    """
    if strategy == TOPIC:
        return f"{topic}-value"
    if strategy not in SUBJECT_STRATEGIES:
        raise OnceflowError(
            f"subject strategy {strategy!r} is not one of {list(SUBJECT_STRATEGIES)} "
            "(TopicNameStrategy, RecordNameStrategy, TopicRecordNameStrategy)"
        )
    if schema is None:
        raise OnceflowError(
            f"the {strategy} subject strategy names the subject after the record: it "
            "needs the record schema (pass --reader-schema FILE)"
        )
    name = record_full_name(schema)
    return name if strategy == RECORD else f"{topic}-{name}"

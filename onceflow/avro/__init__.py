"""Avro with a Confluent-compatible schema registry.

- :mod:`onceflow.avro.registry`: the one client of the registry's REST API (register a
  schema under a subject, look a schema up by id), standard library only.
- :mod:`onceflow.avro.wire`: the Confluent wire format (magic byte 0, a 4-byte big-endian
  schema id, the Avro binary body), encoding, and a decoder that classifies any bytes a
  topic can hold into a record or a stable dead-letter reason.

Below the runtime in the import order: it imports nothing of onceflow but its errors, so
the operators and the Kafka source can reuse it.
"""

__all__: list[str] = []

"""onceflow: exactly-once stream processing on Apache Flink from Python.

The toolkit, for your own PyFlink jobs (``import onceflow``; nothing here starts
a JVM until you call it):

- :func:`environment`: a ``StreamExecutionEnvironment`` with onceflow's Flink
  settings and the connector jars attached (or bring your own);
- :func:`read_kafka_json`: a topic's records as raw JSON with their positions,
  offsets held in checkpoints; :func:`read_kafka_avro`: Confluent-framed Avro records
  decoded into typed Rows of a reader schema, bytes that are not one as dead letters;
- :func:`dedup` and :func:`versioned_update`: the operators; they take JSON
  records, your own Rows or any objects, key the stream themselves and return
  typed result streams (:class:`Deduped`, :class:`Versioned`);
- :func:`write_kafka`, :func:`write_files`: the two-phase-commit sinks, checked
  at once and named with stable uids.

One import namespace: ``onceflow.operators`` (pure cores and PyFlink adapters),
``onceflow.sinks`` (validated factories over Flink's two-phase-commit sinks) and
``onceflow.jobs`` (runnable jobs built on them) are the repository's top-level
folders ``operators/``, ``sinks/`` and ``jobs/`` (symlinked here, copied into the
wheel). The rest of this package is the toolkit's runtime (``runtime/``), the
local stack (``local/``), test tooling (``testing/``), the verifier, the
benchmarks and the ``onceflow`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module defining it (imported on first use: pyflink is heavy).
_API = {
    "environment": "onceflow.runtime.flinkenv",
    "FlinkSettings": "onceflow.runtime.flinkenv",
    "read_kafka_json": "onceflow.runtime.kafka_source",
    "KafkaSourceSpec": "onceflow.runtime.kafka_source",
    "read_kafka_avro": "onceflow.runtime.kafka_avro",
    "AvroRecords": "onceflow.runtime.kafka_avro",
    "dedup": "onceflow.operators.dedup.stream",
    "Deduped": "onceflow.operators.dedup.stream",
    "versioned_update": "onceflow.operators.versioned.stream",
    "Versioned": "onceflow.operators.versioned.stream",
    "CHANGES_SCHEMA": "onceflow.operators.versioned.flink",
    "write_kafka": "onceflow.sinks.kafka",
    "KafkaSinkSpec": "onceflow.sinks.kafka",
    "write_files": "onceflow.sinks.files",
    "FileSinkSpec": "onceflow.sinks.files",
    "RecordSchema": "onceflow.schema",
    "OnceflowError": "onceflow.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'onceflow' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

"""What ships inside a job: the Flink environment, job configuration and runner, the
Kafka source, the wiring to the sinks, topic helpers, paths and the pinned Java
artifacts. Imports only ``onceflow.operators``, ``onceflow.sinks`` and
``onceflow.errors``; never the local stack or the test tooling."""

__all__: list[str] = []

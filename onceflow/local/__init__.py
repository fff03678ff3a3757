"""The local stack: a single-node KRaft Kafka broker, a standalone Flink cluster and
the process probes they share. Built on :mod:`onceflow.runtime`."""

__all__: list[str] = []

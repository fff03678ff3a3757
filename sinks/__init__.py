"""Validated factories over Flink's Java two-phase-commit sinks (Kafka, files)."""

__all__: list[str] = []

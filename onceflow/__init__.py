"""onceflow: exactly-once stream processing on Apache Flink from Python.

One import namespace: ``onceflow.operators`` (dedup and versioned update: pure
cores and PyFlink adapters), ``onceflow.sinks`` (validated factories over Flink's
two-phase-commit sinks) and ``onceflow.jobs`` (runnable jobs built on them) are
the repository's top-level folders ``operators/``, ``sinks/`` and ``jobs/``
(symlinked here, copied into the wheel). The rest of this package is the
toolkit's runtime and tooling: project paths, the pinned Java artifacts, the
local Kafka broker and Flink cluster lifecycle, the shared PyFlink environment
builder, the data tools and the ``onceflow`` command.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

"""onceflow: exactly-once stream processing on Apache Flink from Python.

The toolkit's own runtime lives here: project paths, the pinned Java artifacts,
the local Kafka broker and Flink cluster lifecycle, the shared PyFlink
environment builder, the data tools and the ``onceflow`` command.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

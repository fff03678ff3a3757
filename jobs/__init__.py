"""Runnable PyFlink jobs: ``python -m onceflow.jobs.<name>`` locally, ``flink run -py jobs/<name>.py``."""

__all__: list[str] = []

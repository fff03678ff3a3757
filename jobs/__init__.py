"""Runnable PyFlink jobs: ``python -m jobs.<name>`` locally, ``flink run -py jobs/<name>.py``."""

__all__: list[str] = []

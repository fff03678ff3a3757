"""Runnable PyFlink jobs (``onceflow.jobs``).

Locally: ``python -m onceflow.jobs.<name>``; on a cluster: ``flink run -py jobs/<name>.py``.
"""

__all__: list[str] = []

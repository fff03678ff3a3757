"""Benchmarks: the cost of exactly-once, side by side with the alternatives.

``make bench`` (``python -m onceflow.bench``) produces one deterministic workload
to one input topic and runs every contender against it on the local broker:

- the ceiling, Kafka's own tools (:mod:`~onceflow.bench.kafka_tools`);
- onceflow's dedup job, a baseline and one factor changed at a time
  (:mod:`~onceflow.bench.flink_dedup`);
- the same dedup in Flink SQL (:mod:`~onceflow.bench.flink_sql`);
- the same dedup in Quix Streams, in its own venv (:mod:`~onceflow.bench.quix`);
- end-to-end latency at two checkpoint intervals (:mod:`~onceflow.bench.latency`);
- recovery time after a TaskManager SIGKILL (:mod:`~onceflow.bench.recovery`);
- a profile of the Python operator (:mod:`~onceflow.bench.operator_profile`).

Results go to ``bench/results/<run id>.json``, ``.md`` and ``.png``
(:mod:`~onceflow.bench.report`); how each figure is measured is in
:mod:`~onceflow.bench.common`.
"""

__all__: list[str] = []

"""Stateful stream operators for onceflow.

Each operator is split into a pure core and a thin PyFlink adapter. The cores
(``onceflow.operators.dedup``, ``onceflow.operators.versioned``) see keyed state only through
:class:`onceflow.operators.state.ValueStore` and receive time as an explicit ``now_ms``;
they never import pyflink and never read the clock, so they are unit-tested and
fuzzed without a JVM. Exactly-once end to end comes from Flink checkpointing the
keyed state together with the Kafka source offsets and a transactional sink; the
cores only have to be deterministic functions of (state, record, now_ms).
"""

__all__: list[str] = []

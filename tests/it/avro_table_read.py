"""Read Kafka topics through Flink's ``avro-confluent`` table format, one bounded query per
topic, on the mini-cluster of this process; print one JSON line per topic.

Run by ``test_avro_flink.py`` as its own process (a fresh JVM with the connector jars):

    python avro_table_read.py SPEC_JSON

where the spec is ``{"bootstrap": ..., "registry": ..., "columns": "id STRING, ...",
"topics": [...]}``. Each output line is ``{"topic": ..., "rows": [[...], ...], "seconds": ...}`` or
``{"topic": ..., "error": "<the innermost causes>", "seconds": ...}``.
"""

from __future__ import annotations

import json
import sys
import time

from onceflow.runtime.flinkenv import FlinkSettings, create_env


def _root_cause(exc: BaseException) -> str:
    """The innermost Java cause of a failed job, as ``Class: message`` lines."""
    text = str(exc)
    causes = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("Caused by:")]
    return "\n".join(causes[-3:]) if causes else text[-2000:]


def main(spec: dict[str, object]) -> None:
    from pyflink.table import StreamTableEnvironment

    # Bounded reads, no checkpoints, no restarts: a bad record fails the query at once.
    env = create_env(FlinkSettings(parallelism=1, checkpoint_interval_ms=0, restart_attempts=0))
    tenv = StreamTableEnvironment.create(env)
    for i, topic in enumerate(spec["topics"]):  # type: ignore[attr-defined]
        table = f"t{i}"
        tenv.execute_sql(
            f"""
            CREATE TABLE {table} ({spec["columns"]}) WITH (
              'connector' = 'kafka',
              'topic' = '{topic}',
              'properties.bootstrap.servers' = '{spec["bootstrap"]}',
              'properties.isolation.level' = 'read_committed',
              'scan.startup.mode' = 'earliest-offset',
              'scan.bounded.mode' = 'latest-offset',
              'value.format' = 'avro-confluent',
              'value.avro-confluent.url' = '{spec["registry"]}'
            )
            """
        )
        started = time.monotonic()
        try:
            with tenv.execute_sql(f"SELECT * FROM {table}").collect() as rows:
                out: dict[str, object] = {
                    "topic": topic,
                    "rows": [[row[j] for j in range(len(row))] for row in rows],
                }
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            out = {"topic": topic, "error": _root_cause(exc)}
        out["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))

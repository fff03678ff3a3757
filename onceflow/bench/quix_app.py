"""The dedup as a Quix Streams application (runs in its own venv, not onceflow's).

Quix Streams needs protobuf >= 6 and PyFlink's apache-beam needs protobuf < 6, so
this file imports nothing from onceflow: ``onceflow.bench.quix`` runs it with
the interpreter of ``.cache/bench-venvs/quix`` (``python -P``, so this folder's
modules never shadow a library's).

Dedup: the input is keyed by id, and Quix scopes state to the message key, so a
stateful filter keeps a record when its key has no state yet and stores a marker.
Delivery: ``processing_guarantee="exactly-once"`` -- output records, the state's
changelog records and the consumed offsets are committed in one Kafka transaction
every ``--commit-interval`` seconds. It stops after ``--count`` outputs (or
``--idle-timeout`` seconds without input), committing the last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

__all__ = ["main"]

log = logging.getLogger("quix_app")


def main(argv: list[str] | None = None) -> int:
    from quixstreams import Application, State

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop after this many outputs")
    parser.add_argument("--commit-interval", type=float, default=2.0)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument(
        "--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )
    args = parser.parse_args(argv)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group_id,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="INFO",
        # Must outlive a commit interval plus a restart, below the broker's maximum.
        producer_extra_config={"transaction.timeout.ms": 600_000},
    )
    source = app.topic(args.input_topic, key_deserializer="bytes", value_deserializer="json")
    sink = app.topic(args.output_topic, key_serializer="bytes", value_serializer="json")

    def first_seen(value: Any, state: State) -> bool:
        if state.get("seen") is not None:
            return False
        state.set("seen", 1)
        return True

    sdf = app.dataframe(source)
    sdf = sdf.filter(first_seen, stateful=True)
    sdf.to_topic(sink)
    started = time.monotonic()
    app.run(count=args.count, timeout=args.idle_timeout, collect=False)
    print(f"quix dedup stopped after {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

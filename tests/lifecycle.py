"""Shared by the job lifecycle ITs: the ``onceflow`` command run in the test's process,
and the checks that a stopped job left no Kafka transaction open."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from onceflow.cli import main
from onceflow.ops.transactions import end_offsets, find_stuck, open_transactions


def onceflow_cli(*argv: str) -> tuple[int, str, str]:
    """``onceflow *argv`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue().strip(), err.getvalue()


def assert_no_transaction_left(
    bootstrap: str, prefix: str, topics: Sequence[str], outputs: dict[str, int]
) -> None:
    """Nothing left open by ``prefix``, nothing hanging on ``topics``, and on every
    partition of ``outputs`` (topic -> partitions) the last stable offset equals the high
    watermark: read_committed readers are not held back anywhere."""
    from kafka import TopicPartition

    assert open_transactions(bootstrap, prefix) == []
    assert not find_stuck(bootstrap, prefix, older_than_s=0, topics=list(topics))
    partitions = [TopicPartition(t, p) for t, n in outputs.items() for p in range(n)]
    stable, high = end_offsets(bootstrap, partitions)
    assert stable == high

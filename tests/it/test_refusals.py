"""Misconfiguration is refused at start, before any JVM, with what to change."""

from __future__ import annotations

import pytest

from onceflow.testing.harness import run_to_end

BASE = ["--input-topic", "i", "--output-topic", "o", "--dlq-topic", "d"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--transactional-id-prefix", "p", "--transaction-timeout-ms", "4000000"],
            "exceeds the broker's transaction.max.timeout.ms (3600000)",
        ),
        (
            ["--transactional-id-prefix", "p", "--checkpoint-interval-ms", "0"],
            "checkpointing is off",
        ),
        ([], "needs a transactional id prefix"),
    ],
)
def test_dedup_job_refuses_unsafe_settings(
    kafka_bootstrap: str, extra: list[str], message: str
) -> None:
    run = run_to_end(
        "onceflow.jobs.dedup", ["--bootstrap", kafka_bootstrap, *BASE, *extra], timeout=120
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr

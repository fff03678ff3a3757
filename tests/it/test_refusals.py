"""Misconfiguration is refused at start, before any JVM, with what to change."""

from __future__ import annotations

from collections.abc import Callable

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


def test_dedup_job_refuses_a_dlq_topic_too_small_for_its_dead_letters(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """A dead letter over the DLQ topic's limit would fail the sink on every restart."""
    dlq = topic_factory("dlq", config={"max.message.bytes": "200000"})
    args = ["--bootstrap", kafka_bootstrap, "--input-topic", "i", "--output-topic", "o"]
    args += ["--dlq-topic", dlq, "--transactional-id-prefix", "p"]
    run = run_to_end("onceflow.jobs.dedup", args, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"topic {dlq!r} accepts (max.message.bytes) at most 200000" in run.stderr
    assert "--dead-letter-max-bytes" in run.stderr
    # Smaller dead letters fit: the next check speaks (a timeout the broker refuses).
    fits = [*args, "--dead-letter-max-bytes", "150000", "--transaction-timeout-ms", "4000000"]
    run = run_to_end("onceflow.jobs.dedup", fits, timeout=120)
    assert run.returncode == 2 and "transaction.max.timeout.ms" in run.stderr, run.stderr[-2000:]

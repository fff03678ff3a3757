"""Per-job Flink settings: what each override becomes in Flink's configuration."""

from __future__ import annotations

import pytest

from onceflow.errors import OnceflowError
from onceflow.runtime.flinkenv import FlinkSettings


def test_restart_attempts_bound_the_exponential_delay() -> None:
    out = FlinkSettings(restart_attempts=3).overrides()
    assert out["restart-strategy.type"] == "exponential-delay"
    assert out["restart-strategy.exponential-delay.attempts-before-reset-backoff"] == "3"


def test_no_restart_attempts_means_no_restarts() -> None:
    # Flink refuses exponential-delay with fewer than one attempt: the job would not start.
    out = FlinkSettings(restart_attempts=0).overrides()
    assert out["restart-strategy.type"] == "none"
    assert not any(key.startswith("restart-strategy.exponential") for key in out)


def test_negative_restart_attempts_are_refused() -> None:
    with pytest.raises(OnceflowError, match="restart attempts must be >= 0"):
        FlinkSettings(restart_attempts=-1)


def test_unset_restart_attempts_keep_the_config_file() -> None:
    assert not any(key.startswith("restart-strategy") for key in FlinkSettings().overrides())

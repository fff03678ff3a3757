"""The kill-and-recover scenario's judgement of whether phase B was replayed."""

from __future__ import annotations

import pytest

from onceflow.errors import OnceflowError
from onceflow.testing.recovery import ScenarioLog, retry_until_replayed


def _story(before_b: int | None, restored: int | None) -> ScenarioLog:
    return ScenarioLog(completed_before_b=before_b, restored_from=restored)


@pytest.mark.parametrize(
    ("before_b", "restored", "replayed"),
    [
        (3, 3, True),  # restored the checkpoint B came after: B is processed again
        (3, 2, True),  # an older one (a newer checkpoint was not usable): still before B
        (3, 4, False),  # a checkpoint completed between B and the failure
        (None, 3, False),  # no checkpoint before B: nothing proves a replay
        (3, None, False),  # never restored
    ],
)
def test_replays_phase_b_only_when_restored_checkpoint_precedes_b(
    before_b: int | None, restored: int | None, replayed: bool
) -> None:
    assert _story(before_b, restored).replays_phase_b is replayed


def test_events_render_in_time_order_whatever_the_order_noted() -> None:
    story = ScenarioLog()
    story.note("second", at=102.0)
    story.note("first", at=100.0)
    assert story.render().splitlines() == ["  +   0.0s first", "  +   2.0s second"]


def test_retry_returns_first_attempt_that_replayed() -> None:
    stories = {1: _story(3, 4), 2: _story(5, 5), 3: _story(7, 7)}
    calls: list[int] = []

    def attempt(number: int) -> ScenarioLog:
        calls.append(number)
        return stories[number]

    assert retry_until_replayed(attempt, story_of=lambda s: s) is stories[2]
    assert calls == [1, 2]


def test_retry_gives_up_with_every_story() -> None:
    def attempt(number: int) -> ScenarioLog:
        story = _story(number, number + 1)
        story.note(f"attempt-{number}-event", at=float(number))
        return story

    with pytest.raises(OnceflowError) as err:
        retry_until_replayed(attempt, story_of=lambda s: s, attempts=2)
    assert "attempt-1-event" in str(err.value) and "attempt-2-event" in str(err.value)

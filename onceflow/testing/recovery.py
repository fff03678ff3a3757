"""Kill-and-recover scenario: fail a running job after a checkpoint, let it recover.

The scenario feeds a job's input in three phases around an injected failure and
leaves the judging to the caller, who drains the outputs with read_committed and
compares exact multisets. The same scenario with an at-least-once sink must show
duplicates: that is how we know it can see a violation.

Protocol (the steps of :func:`run_kill_and_recover`):

1. Start the job (its own mini-cluster, REST port known) and send phase A.
2. Wait until A's outputs are written and a checkpoint has completed after
   that, so the failure happens after at least one completed checkpoint.
3. Right after the next checkpoint completes, send phase B and wait until its
   outputs are written (read_uncommitted): they belong to no completed
   checkpoint yet, so a replay will produce them again.
4. Send phase C, whose first record is the poison: the operator raises on it
   once, the job restarts from the last completed checkpoint and replays B and C.
5. Wait until the restart happened and every expected output is committed,
   then one more checkpoint, then stop the job.

Whether the replay really covered phase B depends on timing the scenario cannot
control (a checkpoint may still complete between B and the poison on a slow
machine). The log says what happened: ``replays_phase_b`` is True when the job
restored a checkpoint that was already complete before B was sent. The
recovery tests and their at-least-once controls need that replay: they run the
scenario again on fresh topics until it happened (:func:`retry_until_replayed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from onceflow.errors import OnceflowError
from onceflow.testing.harness import JobProcess, count_values, wait_until
from onceflow.testing.produce import RECONNECT_BACKOFF_MAX_MS

__all__ = ["Phases", "ScenarioLog", "retry_until_replayed", "run_kill_and_recover", "send"]

log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None]
Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Phases:
    """The input split around the failure; ``c[0]`` is the poison record.

    :param a_outputs: outputs expected on the watched topic after phase A.
    :param ab_outputs: outputs expected after phases A and B.
    :param total_outputs: outputs expected once everything is processed.
    """

    a: Sequence[Record]
    b: Sequence[Record]
    c: Sequence[Record]
    a_outputs: int
    ab_outputs: int
    total_outputs: int


@dataclass
class ScenarioLog:
    """What happened, for the test's message and the verifier's report."""

    events: list[tuple[float, str]] = field(default_factory=list)
    restarts: int = 0
    checkpoints: int = 0
    #: Latest completed checkpoint id just before phase B was sent.
    completed_before_b: int | None = None
    #: Id of the checkpoint the job restored after the injected failure.
    restored_from: int | None = None

    @property
    def replays_phase_b(self) -> bool:
        """True when the restart went back to before phase B, so B was processed twice."""
        return (
            self.completed_before_b is not None
            and self.restored_from is not None
            and self.restored_from <= self.completed_before_b
        )

    def note(self, what: str, at: float | None = None) -> None:
        """Log ``what`` at wall-clock time ``at`` (epoch seconds; now when None)."""
        self.events.append((time.time() if at is None else at, what))
        log.info("scenario: %s", what)

    def render(self) -> str:
        if not self.events:
            return "(no events)"
        events = sorted(self.events, key=lambda event: event[0])
        t0 = events[0][0]
        return "\n".join(f"  +{t - t0:6.1f}s {what}" for t, what in events)


def send(bootstrap: str, topic: str, records: Sequence[Record], rate: float | None = None) -> None:
    """Write ``(key, value)`` records in order and wait for every acknowledgement.

    :param rate: at most this many records/s (None: as fast as possible).
    :raises OnceflowError: when a record was not acknowledged.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )
    failures: list[BaseException] = []
    started = time.monotonic()
    try:
        for n, (key, value) in enumerate(records):
            if rate is not None:
                ahead = started + n / rate - time.monotonic()
                if ahead > 0.001:
                    time.sleep(ahead)
            producer.send(topic, key=key, value=value).add_errback(failures.append)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    if failures:
        raise OnceflowError(
            f"{len(failures)} of {len(records)} records to {topic} were not acknowledged; "
            f"first: {failures[0]!r}"
        )


def run_kill_and_recover(
    job: JobProcess,
    bootstrap: str,
    input_topic: str,
    watch_topic: str,
    phases: Phases,
    timeout: float = 180.0,
) -> ScenarioLog:
    """Run the protocol of the module docstring against ``job`` (not yet started).

    :param watch_topic: the output whose counts mark progress.
    :raises OnceflowError: when a step times out (the job's log tail is attached).
    """
    scenario = _Scenario(job, bootstrap, input_topic, watch_topic, phases, timeout)
    try:
        scenario.start_and_send_a()
        scenario.wait_for_a_checkpointed()
        scenario.send_b_after_a_checkpoint()
        scenario.send_c_with_the_poison()
        scenario.wait_for_recovery()
    except OnceflowError as exc:
        detail = f"{exc}\nscenario:\n{scenario.story.render()}\njob log:\n{job.log_tail()}"
        raise OnceflowError(detail) from exc
    finally:
        job.stop()
    return scenario.story


class _Scenario:
    """The steps of :func:`run_kill_and_recover`, each noting what happened in ``story``."""

    def __init__(
        self,
        job: JobProcess,
        bootstrap: str,
        input_topic: str,
        watch_topic: str,
        phases: Phases,
        timeout: float,
    ) -> None:
        self.job = job
        self.bootstrap = bootstrap
        self.input_topic = input_topic
        self.watch_topic = watch_topic
        self.phases = phases
        self.timeout = timeout
        self.story = ScenarioLog()
        self._before_b = 0  # checkpoints completed when phase B was sent

    def start_and_send_a(self) -> None:
        """Start the job and send phase A."""
        self.job.start()
        self.story.note("job started")
        send(self.bootstrap, self.input_topic, self.phases.a)
        self.story.note(f"phase A sent ({len(self.phases.a)} records)")

    def wait_for_a_checkpointed(self) -> None:
        """Wait until A's outputs are written and a checkpoint has completed after that."""
        self._wait("phase A written", lambda: self._written() >= self.phases.a_outputs)
        self._wait_for_next_checkpoint("a checkpoint after phase A", interval=0.1)
        self.story.note(f"checkpoint {self.job.completed_checkpoints()} completed after phase A")

    def send_b_after_a_checkpoint(self) -> None:
        """Send phase B right after a checkpoint completes and wait until B is written.

        Starting B right after a checkpoint gives it a full interval, so the poison
        usually comes before the next checkpoint and the restart replays B.
        """
        self._wait_for_next_checkpoint("the next checkpoint", interval=0.05)
        self._before_b = self.job.completed_checkpoints()
        self.story.completed_before_b = self.job.latest_checkpoint_id("completed")
        send(self.bootstrap, self.input_topic, self.phases.b)
        self.story.note(
            f"phase B sent ({len(self.phases.b)} records) after checkpoint {self._before_b}"
        )
        self._wait(
            "phase B written",
            lambda: self._written() >= self.phases.ab_outputs,
            interval=0.1,
        )

    def send_c_with_the_poison(self) -> None:
        """Send phase C, whose first record makes the operator raise once."""
        send(self.bootstrap, self.input_topic, self.phases.c)
        self.story.note(
            f"phase C sent ({len(self.phases.c)} records, poison first); checkpoints "
            f"completed since B: {self.job.completed_checkpoints() - self._before_b}"
        )

    def wait_for_recovery(self) -> None:
        """Wait for the restart, every output committed, then one more checkpoint."""
        job, story = self.job, self.story
        self._wait("the restart", lambda: job.restarts() >= 1)
        self._wait(
            "the restored checkpoint's id",
            lambda: job.latest_checkpoint_id("restored") is not None,
        )
        story.restored_from = job.latest_checkpoint_id("restored")
        for failed_at in job.failure_times():
            story.note("failure (Flink's exception history)", at=failed_at)
        story.note(
            f"job restarted from checkpoint {story.restored_from} (latest before phase B: "
            f"{story.completed_before_b}; B replayed: {story.replays_phase_b})"
        )
        self._wait("all outputs committed", lambda: self._committed() >= self.phases.total_outputs)
        self._wait_for_next_checkpoint("a final checkpoint")
        story.restarts = job.restarts()
        story.checkpoints = job.completed_checkpoints()
        for checkpoint_id, completed_at in job.checkpoint_completion_times():
            story.note(f"checkpoint {checkpoint_id} completed (Flink)", at=completed_at)
        story.note(f"settled: {story.checkpoints} checkpoints, {story.restarts} restarts")

    def _wait_for_next_checkpoint(self, what: str, interval: float = 0.5) -> None:
        base = self.job.completed_checkpoints()
        self._wait(what, lambda: self.job.completed_checkpoints() > base, interval=interval)

    def _wait(self, what: str, condition: Callable[[], bool], interval: float = 0.5) -> None:
        """Wait for ``condition``; the job exiting meanwhile is an error."""

        def alive_and() -> bool:
            met = condition()
            if not self.job.alive():
                raise OnceflowError(f"the job exited early:\n{self.job.log_tail()}")
            return met

        wait_until(what, alive_and, self.timeout, interval=interval)

    def _written(self) -> int:
        return len(count_values(self.bootstrap, self.watch_topic, "read_uncommitted"))

    def _committed(self) -> int:
        return len(count_values(self.bootstrap, self.watch_topic, "read_committed"))


def retry_until_replayed(
    attempt: Callable[[int], Outcome],
    story_of: Callable[[Outcome], ScenarioLog],
    attempts: int = 3,
) -> Outcome:
    """Run ``attempt(1)``, ``attempt(2)``... until its scenario replayed phase B.

    Each attempt must use fresh topics. Returns the first outcome whose story has
    ``replays_phase_b``.

    :raises OnceflowError: when none of ``attempts`` did (with every story).
    """
    stories: list[str] = []
    for number in range(1, attempts + 1):
        outcome = attempt(number)
        story = story_of(outcome)
        if story.replays_phase_b:
            return outcome
        log.warning("attempt %d did not replay phase B:\n%s", number, story.render())
        stories.append(f"attempt {number}:\n{story.render()}")
    raise OnceflowError(
        f"no attempt out of {attempts} restarted from a checkpoint taken before phase B "
        "(a checkpoint always completed between phase B and the poison):\n" + "\n".join(stories)
    )

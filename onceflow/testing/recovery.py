"""Kill-and-recover scenario: fail a running job after a checkpoint, let it recover.

The scenario feeds a job's input in three phases around an injected failure and
leaves the judging to the caller, who drains the outputs with read_committed and
compares exact multisets. The same scenario with an at-least-once sink must show
duplicates: that is how we know it can see a violation.

Protocol (numbered as in the code):

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
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True
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
    story = ScenarioLog()

    def written() -> int:
        return len(count_values(bootstrap, watch_topic, "read_uncommitted"))

    def committed() -> int:
        return len(count_values(bootstrap, watch_topic, "read_committed"))

    def alive_and(cond: bool) -> bool:
        if not job.alive():
            raise OnceflowError(f"the job exited early:\n{job.log_tail()}")
        return cond

    try:
        # Step 1.
        job.start()
        story.note("job started")
        send(bootstrap, input_topic, phases.a)
        story.note(f"phase A sent ({len(phases.a)} records)")
        # Step 2.
        wait_until("phase A written", lambda: alive_and(written() >= phases.a_outputs), timeout)
        after_a = job.completed_checkpoints()
        wait_until(
            "a checkpoint after phase A",
            lambda: alive_and(job.completed_checkpoints() > after_a),
            timeout,
            interval=0.1,
        )
        story.note(f"checkpoint {job.completed_checkpoints()} completed after phase A")
        # Step 3: start B right after a checkpoint completes, to have a full interval.
        base = job.completed_checkpoints()
        wait_until(
            "the next checkpoint",
            lambda: alive_and(job.completed_checkpoints() > base),
            timeout,
            interval=0.05,
        )
        before_b = job.completed_checkpoints()
        story.completed_before_b = job.latest_checkpoint_id("completed")
        send(bootstrap, input_topic, phases.b)
        story.note(f"phase B sent ({len(phases.b)} records) after checkpoint {before_b}")
        wait_until(
            "phase B written",
            lambda: alive_and(written() >= phases.ab_outputs),
            timeout,
            interval=0.1,
        )
        # Step 4.
        send(bootstrap, input_topic, phases.c)
        story.note(
            f"phase C sent ({len(phases.c)} records, poison first); checkpoints "
            f"completed since B: {job.completed_checkpoints() - before_b}"
        )
        # Step 5.
        wait_until("the restart", lambda: alive_and(job.restarts() >= 1), timeout)
        wait_until(
            "the restored checkpoint's id",
            lambda: alive_and(job.latest_checkpoint_id("restored") is not None),
            timeout,
        )
        story.restored_from = job.latest_checkpoint_id("restored")
        for failed_at in job.failure_times():
            story.note("failure (Flink's exception history)", at=failed_at)
        story.note(
            f"job restarted from checkpoint {story.restored_from} (latest before phase B: "
            f"{story.completed_before_b}; B replayed: {story.replays_phase_b})"
        )
        wait_until(
            "all outputs committed",
            lambda: alive_and(committed() >= phases.total_outputs),
            timeout,
        )
        settled = job.completed_checkpoints()
        wait_until(
            "a final checkpoint",
            lambda: alive_and(job.completed_checkpoints() > settled),
            timeout,
        )
        story.restarts = job.restarts()
        story.checkpoints = job.completed_checkpoints()
        for checkpoint_id, completed_at in job.checkpoint_completion_times():
            story.note(f"checkpoint {checkpoint_id} completed (Flink)", at=completed_at)
        story.note(f"settled: {story.checkpoints} checkpoints, {story.restarts} restarts")
    except OnceflowError as exc:
        detail = f"{exc}\nscenario:\n{story.render()}\njob log:\n{job.log_tail()}"
        raise OnceflowError(detail) from exc
    finally:
        job.stop()
    return story


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

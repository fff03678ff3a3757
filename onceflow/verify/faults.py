"""The faults the verifier injects, and their seeded schedule (pure: no I/O).

Kinds, each a way real deployments lose processes or state:

- ``tm-kill``: SIGKILL of a TaskManager, then a new one is started;
- ``operator-exception``: the dedup operator raises at a chosen record (armed
  at submission with ``--fail-on-id``; fires when that record arrives);
- ``broker-term`` / ``broker-kill``: the Kafka broker stopped with SIGTERM
  (controlled shutdown) or SIGKILL, then started again;
- ``cancel-resume``: the job is cancelled and resubmitted from its latest
  retained checkpoint (``flink run -s``);
- ``savepoint-resume``: stop-with-savepoint, then resubmission from it.

Profiles with ``rescale`` (``short`` and ``long``; not ``ci``, to keep ``make test``
short: ``tests/it/test_rescale.py`` proves rescaling there) add:

- ``rescale``: stop-with-savepoint, then resubmission from it at another
  parallelism (the job's parallelism plus one, and back at the next rescale); later
  resumes keep the parallelism it left. Targets that write PostgreSQL get it too:
  the sink's writers commit or roll back the old subtasks' transactions at any
  parallelism.

Targets that write PostgreSQL add (:data:`POSTGRES_FAULT_KINDS`; never scheduled
for the others):

- ``postgres-kill``: SIGKILL of the postmaster, then it is started again;
- ``postgres-restart-prepared``: the server stopped (SIGINT, fast shutdown: prepared
  transactions survive) while an XA transaction of the sink is prepared, i.e. right
  after a checkpoint completed and before its commit, then started again.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ALL_FAULT_KINDS",
    "FAULT_KINDS",
    "POSTGRES_FAULT_KINDS",
    "RESCALE_KIND",
    "STALL_TARGETS",
    "Fault",
    "Profile",
    "PROFILES",
    "fault_count",
    "fault_kinds",
    "over_target",
    "schedule",
    "stall_after",
    "stalls_by_kind",
]

FAULT_KINDS = (
    "tm-kill",
    "operator-exception",
    "broker-term",
    "broker-kill",
    "cancel-resume",
    "savepoint-resume",
)
"""The kinds every target gets."""

POSTGRES_FAULT_KINDS = ("postgres-kill", "postgres-restart-prepared")
"""The kinds only targets that write PostgreSQL get."""

RESCALE_KIND = "rescale"
"""Stop with a savepoint, resume at another parallelism (profiles with ``rescale``)."""

ALL_FAULT_KINDS = FAULT_KINDS + POSTGRES_FAULT_KINDS + (RESCALE_KIND,)


def fault_kinds(writes_postgres: bool, rescale: bool = False) -> tuple[str, ...]:
    """The kinds a target is scheduled with: the PostgreSQL ones only when it writes a
    table; ``rescale`` when the profile asks for it."""
    kinds = FAULT_KINDS + POSTGRES_FAULT_KINDS if writes_postgres else FAULT_KINDS
    return kinds + (RESCALE_KIND,) if rescale else kinds


@dataclass(frozen=True)
class Fault:
    """One fault: what, and when (seconds after feeding starts)."""

    at_s: float
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in ALL_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {ALL_FAULT_KINDS}")


@dataclass(frozen=True)
class Profile:
    """A verification run's size: records, feed rate and number of faults.

    :param records: input records (30% duplicates, 1% malformed).
    :param rate: records/s the feeder writes.
    :param faults: faults injected; every kind at least once when >= 6 (a target with
        more kinds gets one fault per kind then, see :func:`fault_count`).
    :param rescale: schedule ``rescale`` faults too.
    """

    records: int
    rate: float
    faults: int
    rescale: bool = False

    @property
    def feed_seconds(self) -> float:
        return self.records / self.rate


PROFILES = {
    # `make test`: every kind once, a couple of minutes.
    "ci": Profile(records=60_000, rate=1_500, faults=6),
    # `make verify`: every kind once, 2-3 minutes.
    "short": Profile(records=150_000, rate=2_000, faults=6, rescale=True),
    # `make verify-long`: >= 20 faults over 1M records.
    "long": Profile(records=1_000_000, rate=2_500, faults=24, rescale=True),
}


#: Recovery-time targets (issue 13): the p50 stall per kind, seconds from the fault until
#: output produced after it is committed (:func:`stall_after`). ``--stall-targets``
#: (``make verify-long``) fails a run whose p50 of a kind exceeds its target (anomaly
#: ``stall-over-target``).
STALL_TARGETS: dict[str, float] = {
    "tm-kill": 6.0,
    "broker-term": 10.0,
    "broker-kill": 10.0,
    "operator-exception": 5.0,
    "cancel-resume": 15.0,
    "savepoint-resume": 15.0,
}


def over_target(
    stalls: dict[str, dict[str, float]], targets: dict[str, float] = STALL_TARGETS
) -> list[str]:
    """The kinds whose p50 stall exceeds their target, each as a line saying by how much."""
    return [
        f"{kind}: p50 {figures['p50']:.1f} s over the {targets[kind]:.0f} s target "
        f"({int(figures['count'])} faults)"
        for kind, figures in sorted(stalls.items())
        if kind in targets and figures["p50"] > targets[kind]
    ]


def fault_count(faults: int, kinds: tuple[str, ...]) -> int:
    """Faults to schedule for a profile's ``faults`` and a target's ``kinds``.

    A count that covers every common kind (a profile's promise: every kind at least
    once) is raised to cover every kind of the target too; a smaller count (an
    explicit ``--faults 2``) is kept.
    """
    if faults >= len(FAULT_KINDS):
        return max(faults, len(kinds))
    return faults


def schedule(
    seed: int, count: int, feed_seconds: float, kinds: tuple[str, ...] = FAULT_KINDS
) -> list[Fault]:
    """``count`` faults spread over the feeding time, in a seeded random order.

    Every kind appears once before any repeats (when ``count >= len(kinds)``);
    faults are evenly spaced from 15% to 85% of the feeding time with seeded
    jitter, so each one meets a running job with input still arriving.
    """
    if count < 0:
        raise ValueError("fault count must be >= 0")
    unknown = set(kinds) - set(ALL_FAULT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"fault kinds {sorted(unknown)} unknown or none given")
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < count:
        batch = list(kinds)
        rng.shuffle(batch)
        order.extend(batch)
    order = order[:count]
    if count == 0:
        return []
    start, end = 0.15 * feed_seconds, 0.85 * feed_seconds
    step = (end - start) / max(count - 1, 1)
    faults = []
    for i, kind in enumerate(order):
        jitter = rng.uniform(-0.2, 0.2) * step
        faults.append(Fault(at_s=round(max(0.0, start + i * step + jitter), 2), kind=kind))
    return faults


def stall_after(
    at_s: float,
    samples: list[dict[str, object]],
    committed: Iterable[tuple[int, int]],
    resumed_s: float | None = None,
) -> float | None:
    """Seconds from a fault at ``at_s`` to the moment a record *produced after it* was
    committed (visible to a ``read_committed`` reader).

    ``samples`` are the verifier's once-a-second readings: ``t``, and per output partition
    the high watermark (``hwm``: every record appended so far) and the last stable offset
    (``lso``: everything before it is decided). ``committed`` are the (partition, offset)
    pairs of the output's committed data records, read after the run. A record at an
    offset at or past a partition's high watermark of the first reading at or after the
    fault was appended after the fault; it is visible from the first reading whose last
    stable offset is past it. Data records, not offsets: the abort and commit markers of
    the transactions a restart resolves advance the last stable offset too (the earlier
    measure, "the committed offsets grew", ended stalls on them: 0.4-1.0 s for a
    TaskManager kill, an operator exception or a savepoint resume).

    ``resumed_s``: when a resubmitted job was started (a savepoint or cancel resume, a
    rescale); the record must come after the first reading from then on. A stop with a
    savepoint commits what the old job wrote while it stopped, after the fault began:
    that is not the new job's output (it ended such stalls after ~1 s).

    :returns: the stall (resolution: the sampling interval), or None when no reading
        frames it or nothing produced after the fault was committed.
    """
    readings = [
        (float(str(s["t"])), _offsets(s["hwm"]), _offsets(s["lso"]))
        for s in samples
        if "t" in s and "hwm" in s and "lso" in s
    ]
    after = [r for r in readings if r[0] >= at_s]
    baseline = [r for r in after if r[0] >= (resumed_s or at_s)]
    if not baseline:
        return None
    watermarks = baseline[0][1]
    first_new: dict[int, int] = {}
    for partition, offset in committed:
        if offset >= watermarks.get(partition, offset + 1):
            first_new[partition] = min(offset, first_new.get(partition, offset))
    for t, _hwm, lso in after:
        if any(lso.get(p, 0) > offset for p, offset in first_new.items()):
            return round(t - at_s, 1)
    return None


def _offsets(value: object) -> dict[int, int]:
    """A reading's per-partition offsets (JSON turns their keys into strings)."""
    assert isinstance(value, dict)
    return {int(p): int(o) for p, o in value.items()}


def stalls_by_kind(faults: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Per fault kind: count, p50 and max of the faults' ``stall_s`` (None ones left out)."""
    by_kind: dict[str, list[float]] = {}
    for f in faults:
        stall = f.get("stall_s")
        if isinstance(stall, int | float):
            by_kind.setdefault(str(f["kind"]), []).append(float(stall))
    out = {}
    for kind, values in sorted(by_kind.items()):
        values.sort()
        # The lower median of an even count: the figure a run actually saw.
        out[kind] = {"count": len(values), "p50": values[(len(values) - 1) // 2],
                     "max": values[-1]}  # fmt: skip
    return out

"""A contender that runs more than once in a benchmark run: one row, its median run.

The bench's goals compare two rows of one run (a path and its reference, an
exactly-once row and its at-least-once row). On a shared two-core machine one
run of a contender moves by 10-25% from the next, as much as some differences a
goal asks about, so the rows a goal compares run several times, in rounds, and
each is reported by its median run: the row of the run whose rate is the median
(the lower middle one for an even count), so that its span, record count and
method stay those of one real run. Every run is kept in the row's ``runs``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_run", "measured", "median_run", "paired_costs", "rates", "spread"]


def measured(run: dict[str, Any]) -> bool:
    """Whether a run succeeded with a rate (a failed or skipped run has none)."""
    return run["status"] == "ok" and bool(run.get("records_per_s"))


def rates(row: dict[str, Any]) -> list[float]:
    """The records/s of every successful run of ``row``, in run order."""
    return [float(run["records_per_s"]) for run in row.get("runs", [row]) if measured(run)]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The row that stands for ``runs`` (one contender's runs, as result dicts).

    Its figures are the median successful run's (the last run's when none
    succeeded); ``runs`` holds them all; ``exact`` is False when any run's output
    was not exact; ``broker_restarted`` when the broker restarted in any run.
    """
    ok = sorted(filter(measured, runs), key=lambda run: float(run["records_per_s"]))
    chosen = ok[(len(ok) - 1) // 2] if ok else runs[-1]
    checked = [run["exact"] for run in runs if run.get("exact") is not None]
    return {
        **chosen,
        "runs": list(runs),
        "exact": all(checked) if checked else None,
        "broker_restarted": any(run.get("broker_restarted") for run in runs),
    }


def add_run(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """Add one run of a contender to the throughput rows; returns the contender's row.

    A contender seen before keeps its place; its row becomes the median of its runs.
    """
    run = {key: value for key, value in row.items() if key != "runs"}
    for i, old in enumerate(rows):
        if old["name"] == row["name"]:
            rows[i] = median_run([*old["runs"], run])
            return rows[i]
    rows.append(median_run([run]))
    return rows[-1]


def spread(row: dict[str, Any]) -> tuple[float, float] | None:
    """The lowest and highest rate of a row's successful runs; None for fewer than two."""
    found = rates(row)
    return (min(found), max(found)) if len(found) > 1 else None


def paired_costs(eos: dict[str, Any], alo: dict[str, Any]) -> list[float]:
    """``1 - eos/alo`` of each round in which both rows ran successfully.

    The n-th run of each row ran in the same round, next to each other.
    """
    costs = []
    for a, b in zip(eos.get("runs", [eos]), alo.get("runs", [alo]), strict=False):
        if measured(a) and measured(b):
            costs.append(1.0 - float(a["records_per_s"]) / float(b["records_per_s"]))
    return costs

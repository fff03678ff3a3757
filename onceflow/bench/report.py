"""The results of a run as JSON, a Markdown report and a PNG chart.

Ratios: every throughput is divided by the **ceiling**, ``kafka-consumer-perf``
(Kafka's ConsumerPerformance reading the same input topic on the same broker in
the same run: what the broker can hand to one reader), and by **flink-sql**
(the same dedup in the JVM, same run). Both are measured in the same run, so
the ratios hold up against noise from other work on the machine better than
absolute figures do.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onceflow.bench.operator_profile import WHOLE_STAGE
from onceflow.bench.repeats import measured, paired_costs, spread

__all__ = [
    "CEILING",
    "EOS_PAIRS",
    "GOALS",
    "REFERENCE",
    "Goal",
    "add_ratios",
    "compared",
    "render_markdown",
    "write_chart",
    "write_results",
]

log = logging.getLogger(__name__)

CEILING = "kafka-consumer-perf"
REFERENCE = "flink-sql"
#: A family doing other work than the shared dedup is compared with its own JVM reference.
FAMILY_REFERENCE = {"versioned": "versioned-sql"}


@dataclass(frozen=True)
class Goal:
    """A throughput ratio every run checks: ``name``'s records/s over ``base``'s.

    :param base: a contender of the same run, or a figure measured before (``what``
        says where it comes from).
    """

    what: str
    name: str
    base: str | float
    at_least: float


#: The project's throughput goals (issue 11), checked in every run that has the rows.
GOALS = (
    Goal("dedup by id, JVM path, vs the Flink SQL dedup", "flink-jvm", REFERENCE, 0.9),
    Goal("dedup by id, JVM path, vs Quix Streams exactly-once", "flink-jvm", "quix-eos", 1.5),
    Goal(
        "dedup by fingerprint, JVM path, vs the Flink SQL dedup",
        "flink-jvm-fingerprint",
        REFERENCE,
        0.5,
    ),
    Goal(
        "versioned update (every output), JVM path, vs the ~4,100 records/s the versioned "
        "job ran at before its JVM path (ad-hoc wall time, not measured here)",
        "versioned-jvm",
        4100.0,
        4.0,
    ),
)
#: Each exactly-once row and its at-least-once row: the same path and settings.
EOS_PAIRS = {
    "flink-py-baseline": "flink-py-alo",
    "flink-jvm": "flink-jvm-alo",
    "flink-jvm-fingerprint": "flink-jvm-fingerprint-alo",
    "versioned-jvm": "versioned-jvm-alo",
    "versioned-py": "versioned-py-alo",
}
#: The most exactly-once may cost against at-least-once on any path.
EOS_COST_AT_MOST = 0.10


def compared() -> set[str]:
    """The contenders a ratio or a goal compares: they run ``--repeat`` times."""
    names = {CEILING, REFERENCE, *FAMILY_REFERENCE.values(), *EOS_PAIRS, *EOS_PAIRS.values()}
    for goal in GOALS:
        names.add(goal.name)
        if isinstance(goal.base, str):
            names.add(goal.base)
    return names


_FAMILY_COLOURS = {
    "kafka": "#7f7f7f",
    "sql": "#1f77b4",
    "flink": "#ff7f0e",
    "quix": "#2ca02c",
    "versioned": "#9467bd",
    "udf": "#8c564b",
}


def _rate(rows: list[dict[str, Any]], name: str) -> float | None:
    for row in rows:
        if row["name"] == name and measured(row):
            return float(row["records_per_s"])
    return None


def add_ratios(doc: dict[str, Any]) -> None:
    """Set ``ratio_to_ceiling`` and ``ratio_to_sql`` on every contender, and the bases.

    ``ratio_to_sql`` is against the row's family reference (:data:`FAMILY_REFERENCE`),
    else :data:`REFERENCE`; ``reference`` names the one it used."""
    rows = doc["contenders"]
    ceiling = _rate(rows, CEILING)
    doc["ceiling"] = {"name": CEILING, "records_per_s": ceiling}
    doc["reference"] = {"name": REFERENCE, "records_per_s": _rate(rows, REFERENCE)}
    for row in rows:
        reference = FAMILY_REFERENCE.get(row["family"], REFERENCE)
        rate = row.get("records_per_s") if row["status"] == "ok" else None
        sql = _rate(rows, reference)
        row["reference"] = reference
        row["ratio_to_ceiling"] = round(rate / ceiling, 4) if rate and ceiling else None
        row["ratio_to_sql"] = round(rate / sql, 4) if rate and sql else None


def _fmt(value: float | None, spec: str = ",.0f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def _after(ms: float | None) -> str:
    return "(not seen)" if ms is None else f"+{ms:,.0f} ms"


def _exact(row: dict[str, Any]) -> str:
    if row.get("exact") is None:
        return "–"
    return "yes" if row["exact"] else "**NO**"


def _throughput_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Throughput",
        "",
        f"Ceiling: **{CEILING}** ({_fmt(doc['ceiling']['records_per_s'])} records/s); "
        f"reference: **{REFERENCE}** ({_fmt(doc['reference']['records_per_s'])} records/s), "
        "both from this run"
        + (
            "; the versioned family's reference is **versioned-sql** (Flink SQL's Top-1 by "
            "version into upsert-kafka) on its own change-event input."
            if any(row["family"] in FAMILY_REFERENCE for row in doc["contenders"])
            else "."
        ),
        "",
        "| contender | settings | records/s | × ceiling | × Flink SQL | input records | "
        "span (s) | exact output | load (1 min) |",
        "|---|---|--:|--:|--:|--:|--:|:-:|--:|",
    ]
    for row in doc["contenders"]:
        if row["status"] != "ok":
            rate = f"**{row['status']}**"
        else:
            rate = _fmt(row["records_per_s"]) + (" (time-boxed)" if row["time_boxed"] else "")
            low_high = spread(row)
            if low_high is not None:
                rate += f" (median of {len(row['runs'])}: {_fmt(low_high[0])}–{_fmt(low_high[1])})"
        if "bursts" in (row.get("method") or ""):
            rate += " (bursty output: timed from all tasks running)"
        if row.get("broker_restarted"):
            rate += " (broker restarted meanwhile)"
        lines.append(
            f"| {row['name']} | {row['config']} | {rate} | {_ratio(row.get('ratio_to_ceiling'))} "
            f"| {_ratio(row.get('ratio_to_sql'))} | {row['records']:,} "
            f"| {_fmt(row.get('seconds'), '.1f')} | {_exact(row)} "
            f"| {_fmt(row.get('load1'), '.1f')} |"
        )
    lines += [
        "",
        "Method: input records / (last - first broker append time of the committed output; "
        "output topics use `LogAppendTime`), i.e. processing time without start-up and "
        "without the final commit. Time-boxed rows were stopped after "
        f"{doc['time_box_s']:.0f} s; their input is the consumer group's committed offsets. "
        "The Kafka perf tools report their own rates (ConsumerPerformance: `fetch.nMsg.sec`). "
        "A Flink job whose output came in bursts (an append gap > 3 s, or a long silence "
        "before the first output) is timed from the moment all its tasks ran (REST API) "
        "instead. *exact output*: every expected id committed exactly once (time-boxed: "
        "no duplicates)."
        + (
            f" Rows that a goal or a ratio compares ran {doc['repeat']} times, in rounds "
            "(every other round in reverse order, so neither row of a pair always runs "
            "first); each shows its median run and the lowest and highest rate."
            if doc.get("repeat", 1) > 1
            else ""
        ),
    ]
    return lines + _goals_section(doc)


def _goals_section(doc: dict[str, Any]) -> list[str]:
    """Each goal and exactly-once cost this run can check, with its figure."""
    rows = {row["name"]: row for row in doc["contenders"]}
    found: list[str] = []
    for goal in GOALS:
        rate = _rate(doc["contenders"], goal.name)
        base = goal.base if isinstance(goal.base, float) else _rate(doc["contenders"], goal.base)
        if rate is None or base is None:
            continue
        ratio = rate / base
        against = f"{base:,.0f} records/s" if isinstance(goal.base, float) else goal.base
        found.append(
            f"| {goal.what} | {goal.name} / {against} | **{ratio:.2f}x** "
            f"| >= {goal.at_least:g}x | {'yes' if ratio >= goal.at_least else '**no**'} |"
        )
    for eos, alo in EOS_PAIRS.items():
        eos_rate, alo_rate = _rate(doc["contenders"], eos), _rate(doc["contenders"], alo)
        if eos_rate is None or alo_rate is None:
            continue
        cost = 1.0 - eos_rate / alo_rate
        rounds = paired_costs(rows[eos], rows[alo])
        each = f" (each round: {', '.join(f'{c:.1%}' for c in rounds)})" if len(rounds) > 1 else ""
        found.append(
            f"| exactly-once cost | 1 - {eos} / {alo} | **{cost:.1%}**{each} "
            f"| <= {EOS_COST_AT_MOST:.0%} | {'yes' if cost <= EOS_COST_AT_MOST else '**no**'} |"
        )
    if not found:
        return []
    return [
        "",
        "## Goals",
        "",
        "Ratios of this run's rows (their median runs); an exactly-once cost is "
        "1 - (exactly-once records/s) / (at-least-once records/s) on the same path.",
        "",
        "| goal | ratio of | figure | goal | met |",
        "|---|---|--:|--:|:-:|",
        *found,
    ]


def render_markdown(doc: dict[str, Any]) -> str:
    """The report: machine and date, the throughput table, latency, recovery, profile."""
    m = doc["machine"]
    w = doc["workload"]
    v = m.get("versions", {})
    lines = [
        f"# onceflow benchmark {doc['run_id']}",
        "",
        f"- **Date:** {doc['date']}",
        f"- **Command:** `{doc['command']}`",
        f"- **Machine:** {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"{m['os']}",
        "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- **Workload:** {w['count']:,} JSON records of ~{w['payload_bytes']} bytes, "
        f"{w['duplicate_ratio']:.0%} duplicates ({w['unique']:,} unique ids), one input topic "
        f"with {w['partitions']} partitions"
        + (
            f", produced once in {w['produce_s']:.1f} s and read by every contender"
            if w.get("input_topic")
            else ""
        ),
        f"- **Run time:** {doc['duration_s'] / 60:.1f} min",
    ]
    if doc["contenders"]:
        lines += _throughput_section(doc)
    if doc.get("latency"):
        lines += [
            "",
            "## Latency (produce -> visible to a read_committed consumer)",
            "",
            "| checkpoint interval | feed | outputs | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) "
            "| status |",
            "|--:|--:|--:|--:|--:|--:|--:|:-:|",
        ]
        for lat in doc["latency"]:
            lines.append(
                f"| {lat['checkpoint_interval_ms'] / 1000:g} s | {lat['rate']:,.0f}/s x "
                f"{lat['seconds']:g} s | {lat['outputs']:,} | {_fmt(lat['p50_ms'])} "
                f"| {_fmt(lat['p95_ms'])} | {_fmt(lat['p99_ms'])} | {_fmt(lat['max_ms'])} "
                f"| {lat['status']}{' (broker restarted)' if lat.get('broker_restarted') else ''} |"
            )
        lines += [
            "",
            "Baseline dedup job (EOS/thread/p1/rocksdb). Output commits when a checkpoint "
            "completes, so latency is about half an interval on average and up to a whole "
            "interval, plus the checkpoint and commit time.",
        ]
    rec = doc.get("recovery")
    if rec:
        lines += ["", "## Recovery (TaskManager SIGKILL -> next committed output)", ""]
        if rec["status"] == "ok":
            lines += [
                f"- **Gap: {_fmt(rec['gap_ms'])} ms** from the SIGKILL to the first committed "
                "output record produced after it",
                f"- after the kill (REST polling, upper bounds): failure detected "
                f"{_after(rec['failure_detected_ms'])}, every task running again "
                f"{_after(rec['tasks_running_ms'])}, first checkpoint completed "
                f"{_after(rec['checkpoint_completed_ms'])}; restarts: {rec['restarts']}",
                f"- {rec['config']}, fed {rec['rate']:,.0f} records/s; killed: {rec['killed']}",
                f"- exactly once across the failure: {_exact(rec)} ({rec['outputs']:,} committed, "
                f"{rec['distinct']:,} distinct, {rec['expected_outputs']:,} expected)",
            ]
        else:
            lines.append(f"**{rec['status']}**: {rec['error']}")
        if rec.get("timeline"):
            lines += ["", "<details><summary>timeline (s since start)</summary>", ""]
            lines += [f"- +{t:.1f} s {what}" for t, what in rec["timeline"]]
            lines += ["", "</details>"]
    prof = doc.get("profile")
    if prof:
        lines += [
            "",
            "## Where the Python operator's time goes",
            "",
            "The dedup job's Python logic (`DedupFunction.process_element`: parse, identity, "
            f"`DedupCore`) in a plain "
            f"loop over {prof['records']:,} workload records, in-memory state:",
            "",
            "| stage | µs / record |",
            "|---|--:|",
        ]
        lines += [f"| {k} | {val:.2f} |" for k, val in prof["per_record_us"].items()]
        base = _rate(doc["contenders"], "flink-py-baseline")
        whole = prof["per_record_us"].get(WHOLE_STAGE)
        if base and whole:
            job_us = 1e6 / base
            lines += [
                "",
                f"The baseline job spends {job_us:.1f} µs per record ({base:,.0f} records/s); "
                f"the Python logic accounts for {whole:.1f} µs of it ({whole / job_us:.0%}), "
                f"JSON parsing (`parse_object`) for "
                f"{prof['per_record_us']['parse_object (json.loads + strict checks)']:.1f} µs. "
                f"The remaining {job_us - whole:.1f} µs are the framework: PEMJA calls between "
                "the JVM and Python, row and bytes conversion, keyed state through the JVM, "
                "the Kafka connector, checkpoints. Flink SQL does all of it in the JVM.",
            ]
        lines += [
            "",
            "Top functions by own time (cProfile):",
            "",
            "| function | calls | own s | µs / record |",
            "|---|--:|--:|--:|",
        ]
        lines += [
            f"| `{f['function']}` | {f['calls']:,} | {f['tottime_s']:.3f} "
            f"| {f['us_per_record']:.2f} |"
            for f in prof["top_functions"]
        ]
    problems = [
        {**run, "name": f"{r['name']} (run {i} of {len(r['runs'])})"}
        for r in doc["contenders"]
        for i, run in enumerate(r.get("runs", []), 1)
        if run["status"] != "ok" and r["status"] == "ok"
    ]
    problems += [r for r in doc["contenders"] if r["status"] != "ok"]
    problems += [r for r in doc.get("latency", []) if r["status"] != "ok"]
    if rec and rec["status"] != "ok":
        problems.append(rec)
    if doc.get("errors"):
        problems += doc["errors"]
    if problems:
        lines += ["", "## Failed or skipped", ""]
        lines += [f"- **{p['name']}** ({p['status']}): {p.get('error')}" for p in problems]
    return "\n".join(lines) + "\n"


def write_chart(doc: dict[str, Any], path: Path) -> None:
    """Throughput bars (log scale, ceiling and SQL marked) and latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["contenders"] if r["status"] == "ok" and r.get("records_per_s")]
    latency = [lat for lat in doc.get("latency", []) if lat.get("p50_ms") is not None]
    panels = 1 + (1 if latency else 0)
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(13 if panels > 1 else 9, max(3.5, 0.45 * len(rows) + 1.5)),
        gridspec_kw={"width_ratios": [3, 1.3][:panels]},
        squeeze=False,
    )
    ax = axes[0][0]
    names = [r["name"] + (" *" if r["time_boxed"] else "") for r in rows][::-1]
    rates = [r["records_per_s"] for r in rows][::-1]
    colours = [_FAMILY_COLOURS.get(r["family"], "#999999") for r in rows][::-1]
    # Whiskers: the lowest and highest rate of a row that ran more than once (NaN: none).
    ranges = [spread(r) or (math.nan, math.nan) for r in rows][::-1]
    whiskers = [
        [rate - low for rate, (low, _high) in zip(rates, ranges, strict=True)],
        [high - rate for rate, (_low, high) in zip(rates, ranges, strict=True)],
    ]
    bars = ax.barh(names, rates, color=colours, xerr=whiskers, capsize=2, ecolor="#333333")
    ax.set_xscale("log")
    ax.set_xlabel("records/s (log scale); * time-boxed; whiskers: lowest-highest of repeated runs")
    ax.set_title(f"Throughput, {doc['workload']['count']:,} records ({doc['run_id']})")
    for bar, rate, (_low, high) in zip(bars, rates, ranges, strict=True):
        x = (rate if math.isnan(high) else max(rate, high)) * 1.05  # right of a whisker
        ax.text(x, bar.get_y() + bar.get_height() / 2, f"{rate:,.0f}", va="center", fontsize=8)
    for key, style in (("ceiling", "--"), ("reference", ":")):
        base = doc[key]["records_per_s"]
        if base:
            ax.axvline(
                base,
                color="black",
                linestyle=style,
                linewidth=1,
                label=f"{doc[key]['name']} ({base:,.0f}/s)",
            )
    if doc["ceiling"]["records_per_s"] or doc["reference"]["records_per_s"]:
        ax.legend(loc="lower right", fontsize=8)
    if rates:
        ax.set_xlim(10 ** math.floor(math.log10(min(rates))), max(rates) * 3)
    if latency:
        lx = axes[0][1]
        labels = [f"{lat['checkpoint_interval_ms'] / 1000:g} s" for lat in latency]
        width = 0.25
        for i, (pct, colour) in enumerate(
            (("p50_ms", "#9ecae1"), ("p95_ms", "#4292c6"), ("p99_ms", "#08519c"))
        ):
            xs = [j + (i - 1) * width for j in range(len(latency))]
            lx.bar(
                xs,
                [lat[pct] / 1000 for lat in latency],
                width,
                color=colour,
                label=pct.removesuffix("_ms"),
            )
        lx.set_xticks(range(len(latency)), labels)
        lx.set_xlabel("checkpoint interval")
        lx.set_ylabel("seconds to read_committed visibility")
        lx.set_title("End-to-end latency")
        lx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``<run_id>.json``, ``.md`` and ``.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    add_ratios(doc)
    stem = out_dir / doc["run_id"]
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md")}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    paths["md"].write_text(render_markdown(doc))
    try:
        write_chart(doc, stem.with_suffix(".png"))
        paths["png"] = stem.with_suffix(".png")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
        log.warning("could not draw the chart: %s", exc)
    return paths

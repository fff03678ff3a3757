"""The verifier's outputs: a one-screen summary and a PNG plot."""

from __future__ import annotations

from pathlib import Path

from onceflow.verify.runner import VerifyResult

__all__ = ["summary", "plot"]


def summary(result: VerifyResult) -> str:
    """One screen: verdict, anomalies (Jepsen's names), counts, faults."""
    s = result.settings
    c = result.counts
    verdict = "PASS: exactly-once held" if result.ok else "FAIL: anomalies found"
    lines = [
        f"onceflow verify {s.get('job', 'dedup')} ({s['guarantee']}, "
        f"{c.get('input_records', 0):,} records, "
        f"{len(result.faults)} faults, {result.duration_s:.0f} s): {verdict}",
        "",
        "anomalies:  " + "  ".join(f"{k}={v}" for k, v in result.anomalies.items()),
        f"transactions left open (lingering of the run's prefix; kafka-transactions "
        f"find-hanging on its topics): {len(result.hanging_transactions)}",
        "",
        f"output      {c.get('output_committed', 0):>9,} committed "
        f"(expected {c.get('expected_output', 0):,}); read_uncommitted "
        f"{c.get('output_uncommitted', 0):,} ({c.get('aborted_records', 0):,} aborted)",
        f"dead letters{c.get('dead_letters', 0):>9,} "
        f"(expected {c.get('expected_dead_letters', 0):,})",
        *(
            [
                f"parquet rows{c['parquet_rows']:>9,} (one per applied change); stale "
                f"{c.get('stale', 0):,}, conflict {c.get('conflict', 0):,} reports"
            ]
            if "parquet_rows" in c
            else []
        ),
        *(
            [
                f"table rows  {c['table_rows']:>9,} (expected {c.get('expected_table_rows', 0):,}, "
                f"{c.get('table_tombstones', 0):,} tombstones); PostgreSQL {s.get('postgres')}"
            ]
            if "table_rows" in c
            else []
        ),
        f"checkpoints {c.get('checkpoints_completed', 0):>9,} completed; restarts "
        f"{c.get('restarts', 0)}; jobs submitted {c.get('jobs_submitted', 0)}",
        "",
        "faults:",
    ]
    for f in result.faults:
        fired = "" if "fired" not in f else (" (fired)" if f["fired"] else " (did NOT fire)")
        stall = f.get("stall_s")
        stalled = "   -   " if stall is None else f"{stall:5.1f} s"
        lines.append(f"  +{f['at_s']:6.1f}s  {f['kind']:<25} stall {stalled}  {f['detail']}{fired}")
    if result.stalls:
        lines.append(
            "stall (fault -> output produced after it committed), p50/max per kind: "
            + "; ".join(
                f"{kind} {v['p50']:.1f}/{v['max']:.1f} s" for kind, v in result.stalls.items()
            )
        )
    for name, examples in result.examples.items():
        if examples:
            lines.append(f"{name} e.g. {'; '.join(examples[:3])}")
    return "\n".join(lines)


def plot(result: VerifyResult, path: Path) -> Path:
    """Committed output rate with fault markers, checkpoint durations, final counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_cp, ax_counts) = plt.subplots(
        3, 1, figsize=(11, 10), gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    samples = [s for s in result.samples if "committed_offsets" in s]
    ts = [s["t"] for s in samples]
    rates = [0.0] + [
        max(0.0, (b["committed_offsets"] - a["committed_offsets"]) / max(b["t"] - a["t"], 1e-3))
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    ax_rate.plot(ts, rates[: len(ts)], lw=1, color="tab:blue", label="committed output offsets/s")
    colors = {
        "tm-kill": "tab:red",
        "operator-exception": "tab:orange",
        "broker-term": "tab:purple",
        "broker-kill": "black",
        "cancel-resume": "tab:green",
        "savepoint-resume": "tab:olive",
        "rescale": "tab:pink",
        "postgres-kill": "tab:brown",
        "postgres-restart-prepared": "tab:cyan",
    }
    for kind, color in colors.items():
        at = [f["at_s"] for f in result.faults if f["kind"] == kind]
        for i, x in enumerate(at):
            ax_rate.axvline(x, color=color, ls="--", lw=1, label=kind if i == 0 else None)
    ax_rate.set_xlabel("seconds since feeding started")
    ax_rate.set_ylabel("records/s (read_committed)")
    verdict = "PASS" if result.ok else "FAIL"
    ax_rate.set_title(
        f"onceflow verify {result.settings.get('job', 'dedup')}: "
        f"{result.settings['guarantee']}, {len(result.faults)} faults: {verdict}"
    )
    ax_rate.legend(loc="upper right", fontsize=8)

    if result.checkpoints:
        t_first = result.checkpoints[0]["trigger_ms"]
        ax_cp.scatter(
            [(c["trigger_ms"] - t_first) / 1000 for c in result.checkpoints],
            [c["duration_ms"] for c in result.checkpoints],
            s=8,
        )
    ax_cp.set_xlabel("seconds since the first checkpoint")
    ax_cp.set_ylabel("checkpoint duration (ms)")

    names = ["expected", "committed", "aborted", *result.anomalies.keys()]
    values = [
        result.counts.get("expected_output", 0),
        result.counts.get("output_committed", 0),
        result.counts.get("aborted_records", 0),
        *result.anomalies.values(),
    ]
    bars = ax_counts.bar(names, values, color=["tab:gray", "tab:blue", "tab:purple"] + [
        "tab:red" if v else "tab:green" for v in result.anomalies.values()
    ])  # fmt: skip
    ax_counts.bar_label(bars, fmt="{:,.0f}", fontsize=8)
    ax_counts.set_ylabel("records")
    ax_counts.set_yscale("symlog")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The ``onceflow verify`` subcommand: run, print the summary, write JSON and PNG."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from onceflow.runtime.paths import run_dir
from onceflow.verify.faults import PROFILES
from onceflow.verify.targets import TARGETS, check_format

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument(
        "--job", choices=sorted(TARGETS), default="dedup", help="the job to verify (dedup)"
    )
    parser.add_argument(
        "--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )
    parser.add_argument("--seed", type=int, default=1, help="workload and fault schedule")
    parser.add_argument("--records", type=int, help="override the profile's record count")
    parser.add_argument("--rate", type=float, help="override the profile's feed rate")
    parser.add_argument("--faults", type=int, help="override the profile's fault count")
    parser.add_argument("--out", type=Path, help="results folder (run/verify)")
    parser.add_argument(
        "--max-stall",
        type=float,
        metavar="SECONDS",
        help="fail when a fault's stall (to the next committed output) exceeds this",
    )
    parser.add_argument(
        "--stall-targets",
        action="store_true",
        help="fail when a fault kind's p50 stall exceeds its recovery target (TaskManager "
        "kill 6 s, broker bounce 10 s, operator exception 5 s, cancel/savepoint resume 15 s)",
    )
    parser.add_argument(
        "--kinds",
        help="comma-separated fault kinds to inject (default: every kind the job gets), "
        "e.g. postgres-kill,postgres-restart-prepared,operator-exception",
    )
    parser.add_argument(
        "--format",
        choices=["json", "avro"],
        default="json",
        help="the records' format; avro (dedup job) runs the same workload Confluent-framed "
        "through the local schema registry (or $ONCEFLOW_REGISTRY_URL) with the job's "
        "--format avro",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import logging

    from onceflow.verify.report import plot, summary

    # Broker outages are injected on purpose: kafka-python's reconnect noise hides the report.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from onceflow.verify.runner import VerifySettings, verify

    profile = PROFILES[args.profile]
    overrides = {
        k: v
        for k, v in (("records", args.records), ("rate", args.rate), ("faults", args.faults))
        if v is not None
    }
    profile = dataclasses.replace(profile, **overrides)
    settings = VerifySettings(
        profile=profile,
        job=args.job,
        guarantee=args.guarantee,
        seed=args.seed,
        out_dir=args.out or run_dir("verify"),
        max_stall_s=args.max_stall,
        stall_targets=args.stall_targets,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None,
        value_format=args.format,
    )
    check_format(TARGETS[args.job], args.format)  # refused before anything starts
    from onceflow.verify.faults import fault_count, fault_kinds

    # PostgreSQL faults only apply to a table we own (not one of $ONCEFLOW_PG_URL).
    writes_postgres = TARGETS[args.job].writes_postgres
    kinds = fault_kinds(writes_postgres and not os.environ.get("ONCEFLOW_PG_URL"), profile.rescale)
    faults = fault_count(profile.faults, settings.kinds or kinds)
    started = time.strftime("%H:%M:%S")
    print(
        f"{started} verifying the {args.job} job ({args.guarantee}, {args.format}): "
        f"{profile.records:,} records "
        f"at {profile.rate:,.0f}/s, {faults} faults",
        flush=True,
    )
    result = verify(settings, progress=not args.no_progress)
    out_dir = Path(result.settings["out_dir"])
    (out_dir / "result.json").write_text(result.to_json())
    png = plot(result, out_dir / "verify.png")
    print(summary(result))
    print(f"\nresult {out_dir / 'result.json'}\nplot   {png}")
    return 0 if result.ok else 1

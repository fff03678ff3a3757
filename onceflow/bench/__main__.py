"""``python -m onceflow.bench``: run the benchmarks, write JSON + Markdown + PNG.

Protocol:

1. Check that the broker commits transactions.
2. Produce the workload once to a fresh input topic (``--partitions`` partitions).
3. Run the throughput contenders one after the other (never two heavy things at
   once: the machine has two cores), each against the same input topic. The rows
   a goal or a ratio compares (``report.compared``) run ``--repeat`` times, in
   rounds after the first (every other round in reverse order), and each row is
   its median run (``repeats``).
4. Profile the Python operator's logic on the same records.
5. Measure latency at checkpoint intervals of 1 s and 5 s.
6. Measure recovery after a TaskManager SIGKILL (last: it needs a cluster).
7. Write the results (also after a failure or Ctrl-C), delete the run's topics
   and checkpoints.

A contender that fails or cannot run is reported as such, with the reason, and
the others still run. Exit code: 0 when every selected contender succeeded, 1
otherwise, 2 when the run could not start.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from onceflow.bench import (
    flink_dedup,
    flink_sql,
    kafka_tools,
    postgres,
    quix,
    udf_identity,
    versioned,
)
from onceflow.bench.common import (
    BenchContext,
    ContenderResult,
    broker_pid,
    machine_info,
    wait_for_broker,
)
from onceflow.bench.repeats import add_run
from onceflow.bench.report import compared
from onceflow.errors import OnceflowError

__all__ = ["ALL", "main", "rounds", "select"]

log = logging.getLogger("onceflow.bench")

T = TypeVar("T")

THROUGHPUT: dict[str, tuple[str, Callable[[BenchContext], ContenderResult]]] = {
    **{name: ("kafka", fn) for name, fn in kafka_tools.CONTENDERS.items()},
    **{name: ("sql", fn) for name, fn in flink_sql.CONTENDERS.items()},
    **{name: ("flink", fn) for name, fn in flink_dedup.CONTENDERS.items()},
    **{name: ("udf", fn) for name, fn in udf_identity.CONTENDERS.items()},
    **{name: ("quix", fn) for name, fn in quix.CONTENDERS.items()},
    **{name: ("postgres", fn) for name, fn in postgres.CONTENDERS.items()},
    **{name: ("versioned", fn) for name, fn in versioned.CONTENDERS.items()},
}
#: Families that bring an input of their own (the shared dedup input is not produced for them).
OWN_INPUT = ("postgres", "versioned")
LATENCY_INTERVALS_MS = (1000, 5000)

#: Every contender, in run order, with its family (``--only`` accepts either).
ALL: dict[str, str] = {
    **{name: family for name, (family, _fn) in THROUGHPUT.items()},
    "profile": "profile",
    **{f"latency-{ms // 1000}s": "latency" for ms in LATENCY_INTERVALS_MS},
    "recovery": "recovery",
}


def select(only: str | None) -> list[str]:
    """The contenders ``--only`` names: comma-separated names, families or globs.

    :raises OnceflowError: when a token matches nothing.
    """
    if not only:
        return list(ALL)
    chosen: set[str] = set()
    for token in (t.strip() for t in only.split(",") if t.strip()):
        hits = {n for n, fam in ALL.items() if fnmatch.fnmatch(n, token) or fam == token}
        if not hits:
            raise OnceflowError(
                f"--only {token!r} matches no contender; choose from {', '.join(ALL)} "
                f"or a family ({', '.join(sorted(set(ALL.values())))})"
            )
        chosen |= hits
    return [n for n in ALL if n in chosen]


def build_parser() -> argparse.ArgumentParser:
    from onceflow.runtime.paths import project_root

    p = argparse.ArgumentParser(
        prog="python -m onceflow.bench",
        description=__doc__.splitlines()[0],
        epilog=f"contenders: {', '.join(ALL)}; families: "
        f"{', '.join(dict.fromkeys(ALL.values()))}. Example: --only flink-sql,flink-py-baseline",
    )
    # 600,000: the fast contenders' output spans are then 10-20 s; at 200,000 they were
    # 4-6 s, two or three checkpoint commits, and a commit moved a ratio by a third.
    p.add_argument("--records", type=int, default=600_000, help="workload size (%(default)s)")
    p.add_argument("--only", default=None, help="comma-separated contenders/families/globs")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs of each row a goal or a ratio compares (references, exactly-once rows and "
        "their at-least-once rows), reported by the median run (%(default)s)",
    )
    p.add_argument(
        "--out",
        type=str,
        default=str(project_root() / "bench" / "results"),
        help="results folder (%(default)s)",
    )
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092"),
        help="Kafka bootstrap servers ($KAFKA_BOOTSTRAP or %(default)s)",
    )
    p.add_argument("--partitions", type=int, default=4, help="input/output partitions (4)")
    p.add_argument("--duplicates", type=float, default=0.2, help="duplicate share (0.2)")
    p.add_argument("--seed", type=int, default=6, help="workload seed (%(default)s)")
    # 120 s: the slowest rows a goal compares (the versioned job's Python path, ~80 s of
    # processing after ~15 s of start-up) finish within it, so their output is checked.
    p.add_argument(
        "--time-box",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="stop a contender after this long and measure what it committed (%(default)s)",
    )
    p.add_argument("--latency-rate", type=float, default=2000.0, help="records/s (2000)")
    p.add_argument("--latency-seconds", type=float, default=20.0, help="feed time (20)")
    p.add_argument("--recovery-rate", type=float, default=1000.0, help="records/s (1000)")
    p.add_argument("--keep-topics", action="store_true", help="keep the run's topics")
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    return p


def _produce(ctx: BenchContext, doc: dict[str, Any]) -> None:
    from onceflow.testing.produce import produce

    spec = ctx.spec()
    # produce() creates the topic (it sizes max.message.bytes for the workload).
    ctx.input_topic = ctx.name("input")
    ctx.created_topics.append(ctx.input_topic)
    log.info(
        "producing %s records to %s (%d partitions)",
        f"{spec.count:,}",
        ctx.input_topic,
        ctx.partitions,
    )
    started = time.monotonic()
    ctx.expectation = produce(
        ctx.bootstrap, ctx.input_topic, spec, None, partitions=ctx.partitions, progress=True
    )
    doc["workload"].update(
        produce_s=time.monotonic() - started,
        unique=ctx.expected_uniques,
        input_topic=ctx.input_topic,
    )


def _run(
    doc: dict[str, Any], ctx: BenchContext, chosen: list[str], args: argparse.Namespace
) -> None:
    _check_broker(ctx)
    # PostgreSQL generates its own rows (it measures the sink alone), the versioned
    # family its change events.
    needs_input = any(n in THROUGHPUT and THROUGHPUT[n][0] not in OWN_INPUT for n in chosen)
    if needs_input:
        _produce(ctx, doc)
    plan = rounds(chosen, args.repeat)
    total = sum(len(names) for names in plan)
    i = 0
    for number, names in enumerate(plan, 1):
        ctx.suffix = "" if number == 1 else f"-r{number}"
        for name in names:
            i += 1
            label = name if number == 1 else f"{name} (round {number} of {len(plan)})"
            log.info("[%d/%d] %s", i, total, label)
            started = time.monotonic()
            try:
                _one(doc, ctx, name, args)
            except Exception as exc:  # noqa: BLE001 - one contender's failure is a result
                log.exception("%s failed", label)
                doc["errors"].append(
                    {"name": label, "status": "failed", "error": repr(exc)[-1500:]}
                )
            log.info("[%d/%d] %s done in %.0f s", i, total, label, time.monotonic() - started)
    ctx.suffix = ""


def rounds(chosen: list[str], repeat: int) -> list[list[str]]:
    """The run order: every chosen contender, then ``repeat - 1`` rounds of the chosen
    throughput rows that a goal or a ratio compares, every other round reversed (so
    that neither row of an exactly-once/at-least-once pair always runs first)."""
    repeated = compared()
    again = [name for name in chosen if name in THROUGHPUT and name in repeated]
    plan = [chosen]
    for number in range(2, repeat + 1):
        if again:
            plan.append(again[::-1] if number % 2 == 0 else list(again))
    return plan


def _check_broker(ctx: BenchContext) -> None:
    """Refuse to start unless the broker commits a probe transaction."""
    from onceflow.local.broker import commit_probe_transaction

    try:
        commit_probe_transaction(ctx.bootstrap)
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable broker"
        raise OnceflowError(
            f"the broker at {ctx.bootstrap} does not commit transactions ({exc!r}); "
            "start it with `make up` or point --bootstrap / KAFKA_BOOTSTRAP at one"
        ) from exc


def _guarded(ctx: BenchContext, name: str, run: Callable[[], T]) -> tuple[T, bool]:
    """Run ``run``; once more if the shared broker restarted meanwhile (someone's test).

    :returns: the result and whether the broker restarted during the (last) run.
    """
    base = ctx.suffix
    try:
        for attempt in (1, 2):
            before = broker_pid(ctx.bootstrap)
            result = run()
            after = broker_pid(ctx.bootstrap)
            if before == after:
                return result, False
            log.warning(
                "%s: the broker restarted while it ran (pid %s -> %s): its figures measure "
                "the outage; %s",
                name,
                before,
                after,
                "running it again" if attempt == 1 else "reported as it is",
            )
            wait_for_broker(ctx.bootstrap)
            ctx.suffix = f"{base}-retry"
        return result, True
    finally:
        ctx.suffix = base


def _one(doc: dict[str, Any], ctx: BenchContext, name: str, args: argparse.Namespace) -> None:
    if name in THROUGHPUT:
        _throughput(doc, ctx, name)
    elif name == "profile":
        _profile(doc, ctx)
    elif name.startswith("latency-"):
        _latency(doc, ctx, name, args)
    elif name == "recovery":
        _recovery(doc, ctx, args)


def _throughput(doc: dict[str, Any], ctx: BenchContext, name: str) -> None:
    """Run one throughput contender against the shared input topic."""
    result, restarted = _guarded(ctx, name, lambda: THROUGHPUT[name][1](ctx))
    row = result.to_dict()
    row["broker_restarted"] = restarted
    add_run(doc["contenders"], row)
    if result.status == "ok":
        log.info(
            "%s: %s records/s (%s records in %.1f s)%s",
            name,
            f"{result.records_per_s:,.0f}",
            f"{result.records:,}",
            result.seconds or 0,
            "" if result.exact in (None, True) else " -- OUTPUT NOT EXACT",
        )
    else:
        log.warning("%s %s: %s", name, result.status, result.error)


def _profile(doc: dict[str, Any], ctx: BenchContext) -> None:
    """Profile the Python operator's logic on the workload's records."""
    from onceflow.bench.operator_profile import profile_operator

    doc["profile"] = profile_operator(ctx.spec(), limit=min(ctx.records, 100_000))
    log.info("profile: %s", doc["profile"]["per_record_us"])


def _latency(doc: dict[str, Any], ctx: BenchContext, name: str, args: argparse.Namespace) -> None:
    """Measure latency at the checkpoint interval the name carries (``latency-5s``)."""
    from onceflow.bench.latency import run_latency

    interval_ms = int(name.removeprefix("latency-").removesuffix("s")) * 1000
    lat, restarted = _guarded(
        ctx,
        name,
        lambda: run_latency(ctx, interval_ms, args.latency_rate, args.latency_seconds),
    )
    doc["latency"].append({**lat.to_dict(), "broker_restarted": restarted})
    log.info(
        "%s: %s, p50 %s ms, p95 %s ms, p99 %s ms",
        name,
        lat.status,
        lat.p50_ms,
        lat.p95_ms,
        lat.p99_ms,
    )


def _recovery(doc: dict[str, Any], ctx: BenchContext, args: argparse.Namespace) -> None:
    """Measure recovery after a TaskManager SIGKILL."""
    from onceflow.bench.recovery import run_recovery

    rec, restarted = _guarded(ctx, "recovery", lambda: run_recovery(ctx, rate=args.recovery_rate))
    doc["recovery"] = {**rec.to_dict(), "broker_restarted": restarted}
    log.info("recovery: %s, gap %s ms", rec.status, rec.gap_ms)


def main(argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    from onceflow.bench.report import render_markdown, write_results

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True
    )
    # kafka-python logs every reconnect while the shared broker restarts; the bench
    # notices restarts itself (see _guarded).
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        chosen = select(args.only)
        if args.repeat < 1:
            raise OnceflowError(f"--repeat {args.repeat}: give 1 or more runs per contender")
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for name in ALL:
            print(f"{name:28} {ALL[name]}")
        return 0
    now = datetime.now(UTC)
    ctx = BenchContext(
        bootstrap=args.bootstrap,
        run_id=now.strftime("%Y%m%d-%H%M%S"),
        records=args.records,
        partitions=args.partitions,
        duplicates=args.duplicates,
        seed=args.seed,
        time_box_s=args.time_box,
        out_dir=Path(args.out),
    )
    doc = _new_doc(ctx, now, chosen, argv, args.repeat)
    log.info("onceflow bench %s: %s", ctx.run_id, ", ".join(chosen))
    started = time.monotonic()
    code = 0
    try:
        _run(doc, ctx, chosen, args)
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        doc["errors"].append({"name": "run", "status": "failed", "error": str(exc)})
        code = 2
    except KeyboardInterrupt:
        doc["errors"].append({"name": "run", "status": "failed", "error": "interrupted"})
        code = 130
    finally:
        doc["duration_s"] = time.monotonic() - started
        paths = write_results(doc, ctx.out_dir)
        if not args.keep_topics:
            _clean_up(ctx)
    print(render_markdown(doc))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if code == 0 and _any_failed(doc):
        code = 1
    return code


def _new_doc(
    ctx: BenchContext,
    now: datetime,
    chosen: list[str],
    argv: Sequence[str] | None,
    repeat: int,
) -> dict[str, Any]:
    """The results document, before any contender has run."""
    spec = ctx.spec()
    return {
        "run_id": ctx.run_id,
        "date": now.isoformat(timespec="seconds"),
        "command": " ".join(["python -m onceflow.bench", *(argv or sys.argv[1:])]),
        "selected": chosen,
        "machine": machine_info(),
        "workload": {
            **spec.to_dict(),
            "partitions": ctx.partitions,
            "unique": spec.uniques,
            "produce_s": 0.0,
        },
        "time_box_s": ctx.time_box_s,
        "repeat": repeat,
        "contenders": [],
        "latency": [],
        "recovery": None,
        "profile": None,
        "errors": [],
        "duration_s": 0.0,
    }


def _any_failed(doc: dict[str, Any]) -> bool:
    """Whether a contender did not succeed, or the run itself recorded an error."""
    failed = [run for r in doc["contenders"] for run in r["runs"] if run["status"] != "ok"]
    failed += [r for r in doc["latency"] if r["status"] != "ok"]
    if doc["recovery"] and doc["recovery"]["status"] != "ok":
        failed.append(doc["recovery"])
    return bool(failed or doc["errors"])


def _clean_up(ctx: BenchContext) -> None:
    """Delete the run's topics and checkpoints (and the Quix state)."""
    ctx.delete_topics()
    shutil.rmtree(ctx.work_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(ctx.work_dir / "quix-state", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

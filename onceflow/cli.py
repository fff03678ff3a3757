"""The ``onceflow`` command: local stack, job lifecycle, transactions, data tools,
demo, verifier.

Every problem the user can fix ends as one line ``error: ...`` and exit code 2;
checks that find anomalies exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from onceflow.errors import OnceflowError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]


def _stack(args: argparse.Namespace) -> int:
    from onceflow.local.broker import BrokerSettings, LocalKafka
    from onceflow.local.postgres import LocalPostgres, PostgresSettings
    from onceflow.local.registry import LocalRegistry, RegistrySettings

    kafka = LocalKafka(BrokerSettings(port=args.port))
    postgres = None if args.no_postgres else LocalPostgres(PostgresSettings(port=args.pg_port))
    registry = LocalRegistry(RegistrySettings(port=args.registry_port))
    if args.action == "up":
        if args.registry:
            registry.start()  # its JVM starts while the broker does
        status = kafka.up(timeout=args.timeout)
        print(status.render())
        if postgres is not None:
            print(postgres.up(timeout=args.timeout).render())
        if args.registry:
            print(registry.up(timeout=args.timeout).render())
    elif args.action == "down":
        print("kafka: stopped" if kafka.down() else "kafka: was not running")
        if postgres is not None:
            print("postgres: stopped" if postgres.down() else "postgres: was not running")
        if registry.status().alive:  # stopped whether or not --registry is given
            registry.down()
            print("registry: stopped")
    else:
        status = kafka.status()
        print(status.render())
        if postgres is not None:
            print(postgres.status().render())
        print(registry.status().render())
        from onceflow.local.cluster import LocalFlinkCluster

        print(LocalFlinkCluster().status().render())
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from onceflow.local.cluster import LocalFlinkCluster

    cluster = LocalFlinkCluster(taskmanagers=getattr(args, "taskmanagers", 1))
    if args.action == "up":
        print(cluster.up(timeout=args.timeout).render())
    elif args.action == "down":
        cluster.down()
        print("flink: stopped")
    else:
        print(cluster.status().render())
    return 0


def _cluster_jobs(args: argparse.Namespace) -> int:
    import json

    from onceflow.local.cluster import LocalFlinkCluster
    from onceflow.local.jobs import ENDED, list_jobs, render_jobs

    cluster = LocalFlinkCluster()
    if not cluster.status().running:
        raise OnceflowError(
            f"no Flink cluster answers at {cluster.rest_url}; start it: make cluster-up"
        )
    jobs = [j for j in list_jobs(cluster.rest()) if args.all or j.state not in ENDED]
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
    else:
        print(render_jobs(jobs))
    return 0


def _cluster_stop(args: argparse.Namespace) -> int:
    from onceflow.local.cluster import LocalFlinkCluster
    from onceflow.local.jobs import resolve_job, stop_with_savepoint

    rest = LocalFlinkCluster().rest()
    job_id = resolve_job(rest, args.job)
    target = args.savepoint or None
    if target and "://" not in target and not target.startswith("file:"):
        target = Path(target).resolve().as_uri()
    path = stop_with_savepoint(rest, job_id, target, drain=args.drain)
    print(f"stopped {job_id} with a savepoint; resume with:", file=sys.stderr)
    print(
        f"  onceflow cluster submit <job file> --from-savepoint {path} -- <flags>", file=sys.stderr
    )
    print(path)
    return 0


def _cluster_cancel(args: argparse.Namespace) -> int:
    from onceflow.local.cluster import LocalFlinkCluster
    from onceflow.local.jobs import latest_checkpoint, resolve_job, wait_ended

    cluster = LocalFlinkCluster()
    rest = cluster.rest()
    job_id = resolve_job(rest, args.job)
    try:
        rest.cancel(job_id)
    except OSError as exc:  # urllib's HTTPError/URLError
        raise OnceflowError(f"Flink refused to cancel job {job_id}: {exc}") from exc
    wait_ended(rest, job_id)
    ref = latest_checkpoint(rest, job_id, cluster.checkpoint_dir())
    print(f"cancelled {job_id}", file=sys.stderr)
    if ref is not None and ref.path:
        print(
            f"its latest retained checkpoint: {ref.path}; resume with "
            f"--from-latest-checkpoint {job_id}",
            file=sys.stderr,
        )
    return 0


def _cluster_submit(args: argparse.Namespace) -> int:
    from onceflow.local.cluster import LocalFlinkCluster
    from onceflow.local.jobs import ENDED, latest_checkpoint
    from onceflow.ops.prefixes import check_prefix, job_outputs, record_prefix

    cluster = LocalFlinkCluster()
    job_args = _split_submit_args(args)
    if args.from_savepoint and args.from_latest_checkpoint:
        raise OnceflowError("give --from-savepoint or --from-latest-checkpoint, not both")
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise OnceflowError("--parallelism must be at least 1")
        # The job's own flag, last: it wins over one in the job's flags.
        job_args += ["--parallelism", str(args.parallelism)]
    savepoint = args.from_savepoint
    if args.from_latest_checkpoint:
        rest = cluster.rest()
        old = args.from_latest_checkpoint
        state = str(rest.job(old).get("state", ""))
        if state and state not in ENDED:
            raise OnceflowError(
                f"job {old} is {state}: stop it (`onceflow cluster stop {old}`, which also "
                "gives a savepoint) or cancel it before resuming its checkpoint, or two jobs "
                "would write the same outputs with the same transactional ids"
            )
        ref = latest_checkpoint(rest, old, cluster.checkpoint_dir())
        if ref is None or not ref.path:
            raise OnceflowError(
                f"no retained checkpoint of job {old} (neither the JobManager nor "
                f"{cluster.checkpoint_dir()}/{old} knows one)"
            )
        savepoint = ref.path
        print(f"resuming from checkpoint {ref.id} of job {old}: {savepoint}", file=sys.stderr)
    if args.allow_non_restored_state and not savepoint:
        raise OnceflowError(
            "--allow-non-restored-state needs --from-savepoint or --from-latest-checkpoint"
        )
    outputs = job_outputs(job_args)
    for warning in check_prefix(outputs):
        print(f"warning: {warning}", file=sys.stderr)
    if args.detached:
        job_id = cluster.start_job(
            args.job, job_args, savepoint=savepoint,
            allow_non_restored_state=args.allow_non_restored_state,
        )  # fmt: skip
        record_prefix(outputs, args.job)
        print(f"job {job_id} running{' from ' + savepoint if savepoint else ''}", file=sys.stderr)
        print(job_id)
        return 0
    record_prefix(outputs, args.job)
    return cluster.submit(
        args.job, job_args, savepoint=savepoint,
        allow_non_restored_state=args.allow_non_restored_state,
    )  # fmt: skip


def _add_stack(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from onceflow.local.broker import default_port
    from onceflow.local.postgres import default_pg_port
    from onceflow.local.registry import default_registry_port

    p = sub.add_parser(
        "stack", help="the local KRaft Kafka broker, PostgreSQL server and schema registry"
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, default=default_port(), help="client port (9092)")
    p.add_argument("--pg-port", type=int, default=default_pg_port(), help="PostgreSQL port (5433)")
    p.add_argument("--no-postgres", action="store_true", help="leave the PostgreSQL server alone")
    p.add_argument(
        "--registry",
        action="store_true",
        help="up: also start the schema registry (Apicurio, Confluent-compatible API; off by "
        "default: ~10 s and ~230 MB more); down always stops it",
    )
    p.add_argument(
        "--registry-port",
        type=int,
        default=default_registry_port(),
        help="schema registry port (8085)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")
    p.set_defaults(handler=_stack)


def _add_cluster(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="the local standalone Flink cluster and its jobs")
    actions = p.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start it (harmless when it runs)")
    up.add_argument("--taskmanagers", type=int, default=1)
    up.add_argument("--timeout", type=float, default=120.0)
    actions.add_parser("down", help="stop it")
    actions.add_parser("status", help="is it up, with how many TaskManagers and jobs")
    for action in ("up", "down", "status"):
        actions.choices[action].set_defaults(handler=_cluster)

    jobs = actions.add_parser(
        "jobs", help="jobs with state, parallelism, last completed checkpoint and its age"
    )
    jobs.add_argument("--all", action="store_true", help="ended jobs too")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=_cluster_jobs)

    stop = actions.add_parser(
        "stop",
        help="stop a job with a savepoint (its last transactions commit); prints the path",
    )
    stop.add_argument("job", nargs="?", help="job id or name (default: the only running job)")
    stop.add_argument(
        "--savepoint",
        metavar="DIR",
        nargs="?",
        const="",
        help="savepoint folder (default: execution.checkpointing.savepoint-dir, run/savepoints)",
    )
    stop.add_argument("--drain", action="store_true", help="fire all timers first (final stop)")
    stop.set_defaults(handler=_cluster_stop)

    cancel = actions.add_parser(
        "cancel", help="cancel a job without a savepoint (its retained checkpoints stay)"
    )
    cancel.add_argument("job", nargs="?", help="job id or name (default: the only running job)")
    cancel.set_defaults(handler=_cluster_cancel)

    submit = actions.add_parser(
        "submit",
        help="submit a job file, fresh or resumed",
        description="Submit a job file: onceflow cluster submit jobs/dedup.py [options] -- "
        "<the job's flags>. A resume whose savepoint state does not fit the job is refused "
        "with what to change.",
    )
    submit.add_argument("job", help="the job file (jobs/<name>.py)")
    _submit_options(submit)
    submit.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then the job's flags")
    submit.set_defaults(handler=_cluster_submit)


def _submit_options(submit: argparse.ArgumentParser) -> None:
    resume = submit.add_mutually_exclusive_group()
    resume.add_argument("--from-savepoint", metavar="PATH", help="resume from this savepoint")
    resume.add_argument(
        "--from-latest-checkpoint",
        metavar="JOB_ID",
        help="resume from the latest retained checkpoint of this (stopped) job",
    )
    submit.add_argument(
        "--parallelism", type=int, help="the job's parallelism (rescales a resumed job)"
    )
    submit.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="drop savepoint state that no operator of the job claims (a removed uid)",
    )
    submit.add_argument(
        "--detached",
        action="store_true",
        help="return once every task runs; prints the job id",
    )


def _split_submit_args(args: argparse.Namespace) -> list[str]:
    """The job's flags; options given between the job file and ``--`` are read here
    (argparse leaves everything after the job file to the job)."""
    rest = list(args.job_args)
    if "--" not in rest:
        return rest
    cut = rest.index("--")
    ours, job_args = rest[:cut], rest[cut + 1 :]
    if ours:
        parser = argparse.ArgumentParser(prog="onceflow cluster submit JOB", add_help=False)
        _submit_options(parser)
        for key, value in vars(parser.parse_args(ours)).items():
            if value not in (None, False):
                setattr(args, key, value)
    return job_args


def _txn(args: argparse.Namespace) -> int:
    import json

    from onceflow.ops import transactions as txn

    # The end-offset readers have no group on purpose; kafka-python warns about it.
    logging.getLogger("kafka.coordinator").setLevel(logging.ERROR)
    bootstrap = args.bootstrap
    if args.action == "list":
        found = txn.open_transactions(bootstrap, args.prefix)
        if args.json:
            print(json.dumps([t.to_dict() for t in found], indent=2))
        else:
            print(txn.render_open(found))
        return 0
    if args.action == "find-hanging":
        stuck = txn.find_stuck(
            bootstrap, args.prefix, older_than_s=args.older_than, topics=args.topic
        )
        if args.json:
            print(json.dumps({
                "lingering": [t.to_dict() for t in stuck.lingering],
                "hanging": [h.__dict__ for h in stuck.hanging],
            }, indent=2))  # fmt: skip
        else:
            print(f"lingering (open {args.older_than:g} s or longer, the coordinator still holds "
                  "them; it aborts each when its timeout passes):")  # fmt: skip
            print(_indent(txn.render_open(stuck.lingering)))
            print("hanging (the coordinator does not track them; only an abort ends them):")
            print(_indent(txn.render_hanging(stuck.hanging)))
        return 1 if stuck else 0
    return _txn_abort(args)


def _txn_abort(args: argparse.Namespace) -> int:
    """``onceflow txn abort``: lingering transactions of a prefix and/or hanging ones."""
    from onceflow.ops import transactions as txn

    if not args.prefix and not args.hanging:
        raise OnceflowError(
            "say what to abort: --prefix P (the open transactions of one job's prefix) "
            "and/or --hanging (those Kafka's find-hanging reports, optionally per --topic)"
        )
    bootstrap = args.bootstrap
    now = time.time() * 1000
    lingering = [
        t
        for t in (txn.open_transactions(bootstrap, args.prefix) if args.prefix else [])
        if (t.age_s(int(now)) or 0.0) >= args.older_than
        and (not args.topic or any(p.topic in args.topic for p in t.partitions))
    ]
    hanging = (
        txn.find_hanging(bootstrap, older_than_min=int(args.older_than // 60), topics=args.topic)
        if args.hanging
        else []
    )
    if not lingering and not hanging:
        print("nothing to abort")
        return 0
    for t in lingering:
        print(f"abort {t.transactional_id} ({t.state}, {t.lag:,} offsets held back)")
    for h in hanging:
        print(f"abort hanging {h.render()}")
    if not args.yes:
        print(
            "dry run: add --yes to abort. Abort only transactions of a job that will not "
            "resume, or has resumed already: a job that crashed between a checkpoint and its "
            "commit commits that checkpoint's transactions when it resumes from it, and "
            "aborting them first loses that output."
        )
        return 0
    for t in lingering:
        txn.force_terminate(bootstrap, t.transactional_id)
    for h in hanging:
        txn.abort_on_partition(bootstrap, h.topic, h.partition, h.start_offset)
    aborted = {t.transactional_id for t in lingering}
    left = [
        t for t in txn.open_transactions(bootstrap, args.prefix) if t.transactional_id in aborted
    ]
    print(f"aborted {len(lingering) + len(hanging)}; {len(left)} of them still open")
    return 0 if not left else 1


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _add_txn(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from onceflow.local.broker import default_port

    p = sub.add_parser(
        "txn", help="Kafka transactions left open: list, find hanging ones, abort them"
    )
    actions = p.add_subparsers(dest="action", required=True)
    texts = {
        "list": "open transactions: state, age, partitions, the LSO lag each pins",
        "find-hanging": "transactions open too long (lingering) or untracked (hanging); "
        "exit 1 when any",
        "abort": "abort a prefix's open transactions and/or the hanging ones "
        "(a dry run without --yes)",
    }
    for name, text in texts.items():
        a = actions.add_parser(name, help=text)
        a.add_argument(
            "--bootstrap",
            default=os.environ.get("KAFKA_BOOTSTRAP", f"localhost:{default_port()}"),
            help="Kafka bootstrap servers ($KAFKA_BOOTSTRAP or the local broker)",
        )
        a.add_argument(
            "--prefix",
            help="transactional id prefix (the job's --transactional-id-prefix); default: all",
        )
        a.add_argument("--json", action="store_true")
        if name != "list":
            a.add_argument(
                "--older-than",
                type=float,
                default=300.0,
                metavar="SECONDS",
                help="open at least this long (300: onceflow's checkpoint timeout; Kafka's "
                "hanging ones in whole minutes)",
            )
            a.add_argument(
                "--topic", action="append", help="only transactions on this topic (repeatable)"
            )
        if name == "abort":
            a.add_argument(
                "--hanging",
                action="store_true",
                help="abort Kafka's hanging transactions too (any prefix; scope with --topic)",
            )
            a.add_argument("--yes", action="store_true", help="abort (default: a dry run)")
        a.set_defaults(handler=_txn)


def _jars(args: argparse.Namespace) -> int:
    from onceflow.runtime.java import JAR_KINDS, resolve_jars

    # The registry's archive (~109 MB) only on demand: jobs never need it, and
    # `onceflow stack up --registry` resolves it on first use.
    for kind in args.kind or [k for k in JAR_KINDS if k != "registry"]:
        folder = resolve_jars(kind, force=args.force)
        if kind == "registry":  # one archive, unpacked in the cache
            from onceflow.local.registry import registry_distribution

            print(f"{kind}: {registry_distribution()}")
            continue
        print(f"{kind}: {len(list(folder.glob('*.jar')))} jars in {folder}")
    return 0


def _add_jars(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jars", help="resolve the pinned Java artifacts with Maven (once)")
    p.add_argument(
        "--kind",
        action="append",
        choices=["kafka", "flink", "registry"],
        help="default: kafka and flink (registry: the local schema registry's archive)",
    )
    p.add_argument("--force", action="store_true", help="resolve again even if current")
    p.set_defaults(handler=_jars)


def _missing_extra(name: str, exc: ModuleNotFoundError) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        raise OnceflowError(
            f"`onceflow {name}` needs {exc.name}, part of the tools extra: "
            "pip install 'onceflow[tools]'"
        )

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onceflow", description="Exactly-once stream processing on Apache Flink"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stack(sub)
    _add_cluster(sub)
    _add_txn(sub)
    _add_jars(sub)
    for name, module, text in _TOOLS:
        p = sub.add_parser(name, help=text)
        try:
            mod = __import__(module, fromlist=["add_arguments", "run"])
        except ModuleNotFoundError as exc:  # a tool of an extra that is not installed
            p.set_defaults(handler=_missing_extra(name, exc))
            continue
        mod.add_arguments(p)
        p.set_defaults(handler=mod.run)
    return parser


# (subcommand, module with add_arguments(parser) and run(args) -> int, help)
_TOOLS: list[tuple[str, str, str]] = [
    ("produce", "onceflow.testing.produce", "write a deterministic JSON workload to a topic"),
    (
        "check",
        "onceflow.testing.check",
        "read a topic read_committed and compare with the expectation",
    ),
    ("demo", "onceflow.demo", "produce, run the dedup job end to end, check, summarise"),
    ("verify", "onceflow.verify.command", "inject real faults into the dedup job and check"),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every connection at INFO: keep the command's output readable.
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

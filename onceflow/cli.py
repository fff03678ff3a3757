"""The ``onceflow`` command: local stack lifecycle, data tools, demo, verifier.

Every problem the user can fix ends as one line ``error: ...`` and exit code 2;
checks that find anomalies exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

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

    cluster = LocalFlinkCluster(taskmanagers=args.taskmanagers)
    if args.action == "up":
        print(cluster.up(timeout=args.timeout).render())
    elif args.action == "down":
        cluster.down()
        print("flink: stopped")
    elif args.action == "status":
        print(cluster.status().render())
    else:
        if not args.job:
            raise OnceflowError("cluster submit needs a job file, e.g. jobs/dedup.py")
        job_args = [a for a in args.job_args if a != "--"]
        return cluster.submit(args.job, job_args, detached=args.detached)
    return 0


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
    p = sub.add_parser("cluster", help="the local standalone Flink cluster")
    p.add_argument("action", choices=["up", "down", "status", "submit"])
    p.add_argument("job", nargs="?", help="submit: the job file (jobs/<name>.py)")
    p.add_argument("job_args", nargs=argparse.REMAINDER, help="submit: the job's arguments")
    p.add_argument("--taskmanagers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--detached", action="store_true", help="submit: return once submitted")
    p.set_defaults(handler=_cluster)


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

"""The verifier: run a job on the local cluster, inject real faults, check.

The job is a target (:mod:`onceflow.verify.targets`: ``dedup``,
``versioned-upsert`` or ``versioned-upsert-postgres``), which brings its workload
and its checks.

Protocol (numbered as in :func:`verify`):

1. Bring up the broker and a standalone cluster of 1 JobManager and 2
   TaskManagers; create fresh topics (input with 4 partitions). A target that
   writes PostgreSQL gets the local server (``LocalPostgres().up()``), or the
   database of ``$ONCEFLOW_PG_URL`` (then without PostgreSQL faults: the
   verifier cannot restart a server it does not own). An Avro run
   (``value_format="avro"``) gets the local schema registry (or
   ``$ONCEFLOW_REGISTRY_URL``) and registers the input's schema.
2. Submit the job (parallelism 2, detached), armed with the records at which
   the ``operator-exception`` faults fire.
3. Feed the deterministic workload at a steady rate from a background thread.
4. Inject the scheduled faults; each waits until the job runs again and has
   completed a checkpoint since the previous fault, so every fault meets a job
   that has something to lose. A sampler records the committed output offsets,
   checkpoints and restarts every second.
5. When the input is fed and the output has caught up, stop the job with a
   savepoint (its last transactions commit; nothing is left open).
6. Check every output with read_committed against the target's expectation
   (lost, duplicate, unexpected, nonmonotonic), compare the watched output with
   a read_uncommitted reader (aborted records exist only if faults happened;
   aborted-read), and ask Kafka's own ``kafka-transactions find-hanging`` for
   hanging transactions. A PostgreSQL target also reads its table back and
   counts the transactions left in ``pg_prepared_xacts``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onceflow.errors import OnceflowError
from onceflow.local.broker import LocalKafka
from onceflow.local.cluster import LocalFlinkCluster
from onceflow.local.jobs import (
    completed_checkpoints,
    latest_checkpoint,
    stop_with_savepoint,
    tasks_running,
    wait_ended,
    wait_running,
)
from onceflow.local.postgres import LocalPostgres
from onceflow.local.registry import registry_url_or_local
from onceflow.local.rest import FlinkRest
from onceflow.operators.faults import marker_stem
from onceflow.runtime.paths import project_root, run_dir
from onceflow.testing.produce import RECONNECT_BACKOFF_MAX_MS
from onceflow.verify.faults import (
    Fault,
    Profile,
    fault_count,
    fault_kinds,
    over_target,
    schedule,
    stall_after,
    stalls_by_kind,
)
from onceflow.verify.targets import TARGETS, Target

__all__ = ["VerifySettings", "VerifyResult", "verify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifySettings:
    """One verification run.

    :param profile: records, rate and fault count.
    :param job: the target job (a key of :data:`~onceflow.verify.targets.TARGETS`).
    :param guarantee: the job's delivery guarantee (at-least-once is the control).
    :param seed: seeds the workload and the fault schedule.
    :param out_dir: where the JSON result, the plot and the logs go.
    :param checkpoint_interval_ms: the job's checkpoint interval.
    :param kinds: only these fault kinds (None: every kind the target and profile get);
        each must be one the target can take.
    """

    profile: Profile
    job: str = "dedup"
    guarantee: str = "exactly-once"
    seed: int = 1
    out_dir: Path = field(default_factory=lambda: run_dir("verify"))
    checkpoint_interval_ms: int = 2000
    parallelism: int = 2
    taskmanagers: int = 2
    #: Fail the run (anomaly ``stall-over-bound``) when a fault's stall exceeds this.
    max_stall_s: float | None = None
    kinds: tuple[str, ...] | None = None
    #: Fail the run (anomaly ``stall-over-target``) when a kind's p50 stall exceeds its
    #: :data:`~onceflow.verify.faults.STALL_TARGETS` figure.
    stall_targets: bool = False
    #: The records' format (``avro``: Confluent-framed, the local stack's schema registry
    #: or ``$ONCEFLOW_REGISTRY_URL``); one of the target's ``formats``.
    value_format: str = "json"


@dataclass
class VerifyResult:
    """Everything the report shows; ``anomalies`` empty means the guarantee held."""

    settings: dict[str, Any]
    faults: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    hanging_transactions: list[str] = field(default_factory=list)
    #: Per fault kind: count, p50 and max seconds from the fault to the next committed
    #: output record (each fault's own figure is its ``stall_s``).
    stalls: dict[str, dict[str, float]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values()) and not self.hanging_transactions

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "ok": self.ok}, indent=2, default=str)


class _Sampler(threading.Thread):
    """Every second: the output's last stable offsets and high watermarks per partition
    (and their sum: committed offsets), the input's records (``input``: did the feed
    stall, or the job?), job state, checkpoints, restarts."""

    def __init__(
        self, bootstrap: str, topic: str, input_topic: str, probe: _JobProbe, t0: float
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.probe, self.t0 = bootstrap, topic, probe, t0
        self.input_topic = input_topic
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = watermarks = None
        tps: list[TopicPartition] = []
        inputs: list[TopicPartition] = []
        # A client that cannot reach the broker gives up after 2 s (kafka-python waits
        # 30 s by default): a reading blocked through an outage would end the stall late.
        bounded = {
            "request_timeout_ms": 3000,
            "bootstrap_timeout_ms": 2000,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }
        while not self.stop_event.wait(1.0):
            sample: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 2)}
            try:
                if consumer is None:
                    consumer = KafkaConsumer(
                        bootstrap_servers=self.bootstrap,
                        isolation_level="read_committed",
                        **bounded,
                    )
                if watermarks is None:
                    watermarks = KafkaConsumer(bootstrap_servers=self.bootstrap, **bounded)
                if not tps:  # the metadata call waits without a bound: once is enough
                    parts = consumer.partitions_for_topic(self.topic) or set()
                    tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                    parts = consumer.partitions_for_topic(self.input_topic) or set()
                    inputs = [TopicPartition(self.input_topic, p) for p in sorted(parts)]
                # read_committed end offsets are the last stable offsets: committed data.
                lso = consumer.end_offsets(tps)
                hwm = watermarks.end_offsets(tps)  # read_uncommitted: every record appended
                sample["input"] = sum(watermarks.end_offsets(inputs).values())
                sample["committed_offsets"] = sum(lso.values())
                sample["lso"] = {tp.partition: offset for tp, offset in lso.items()}
                sample["hwm"] = {tp.partition: offset for tp, offset in hwm.items()}
                # When the offsets were known: a call blocks for seconds while the broker
                # restarts, and a reading stamped before it would shorten the stall.
                sample["t"] = round(time.monotonic() - self.t0, 2)
            except Exception as exc:  # noqa: BLE001 - broker down during a fault: no sample
                log.debug("no output sample at %.1fs: %r", sample["t"], exc)
                for client in (consumer, watermarks):
                    if client is not None:
                        with contextlib.suppress(Exception):
                            client.close()
                consumer = watermarks = None
            sample.update(self.probe.snapshot())
            self.samples.append(sample)
        for client in (consumer, watermarks):
            if client is not None:
                client.close()


class _JobProbe:
    """REST views of the job that is current (its id changes on resubmission), and the
    completed checkpoints of every job so far (for the report)."""

    def __init__(self, cluster: LocalFlinkCluster) -> None:
        self.cluster = cluster
        self.rest = FlinkRest(cluster.rest_url)
        self.job_id: str | None = None
        self.checkpoints: dict[tuple[str, int], dict[str, Any]] = {}

    def state(self) -> str:
        if self.job_id is None:
            return "NONE"
        return str(self.rest.job(self.job_id).get("state", "UNKNOWN"))

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state()}
        if self.job_id is None:
            return out
        out["job"] = self.job_id
        with contextlib.suppress(KeyError, TypeError, ValueError):
            stats = self.rest.checkpoints(self.job_id)
            out["completed"] = int(stats["counts"]["completed"])
            for cp in stats.get("history", []):
                if cp.get("status") == "COMPLETED":
                    self.checkpoints[(self.job_id, int(cp["id"]))] = {
                        "job": self.job_id,
                        "id": int(cp["id"]),
                        "trigger_ms": int(cp["trigger_timestamp"]),
                        "duration_ms": int(cp["end_to_end_duration"]),
                    }
        restarts = self.rest.restarts(self.job_id)
        if restarts is not None:
            out["restarts"] = restarts
        return out

    def completed(self) -> int:
        return completed_checkpoints(self.rest, self.job_id) if self.job_id else 0

    def latest_checkpoint_path(self) -> str | None:
        assert self.job_id is not None
        ref = latest_checkpoint(self.rest, self.job_id, self.cluster.checkpoint_dir())
        return ref.path if ref else None

    def tasks_running(self) -> bool:
        return self.job_id is not None and tasks_running(self.rest, self.job_id)

    def wait_running_with_checkpoint(self, since: int, timeout: float = 180) -> None:
        """Until every task is RUNNING and the job has completed a checkpoint after ``since``."""
        assert self.job_id is not None
        wait_running(self.rest, self.job_id, checkpoint_after=since, timeout=timeout)
        self.snapshot()


def _job_args(
    settings: VerifySettings,
    target: Target,
    topics: dict[str, str],
    out_dir: Path,
    stamp: str,
    fail_points: list[str],
    bootstrap: str,
) -> list[str]:
    args = [
        *target.job_args(topics, out_dir),
        "--bootstrap", bootstrap,
        "--transactional-id-prefix", f"verify-{stamp}",
        "--group-id", f"verify-{stamp}",
        "--guarantee", settings.guarantee,
        "--parallelism", str(settings.parallelism),
        "--checkpoint-interval-ms", str(settings.checkpoint_interval_ms),
        # Faults come one after another: keep restarting instead of giving up.
        "--restart-attempts", "1000",
        "--job-name", f"verify-{stamp}",
        "--fail-marker-dir", str(out_dir / "fired"),
    ]  # fmt: skip
    for point in fail_points:
        args += [target.fail_flag, point]
    return args


def _submit(
    cluster: LocalFlinkCluster,
    probe: _JobProbe,
    job_file: str,
    args: list[str],
    savepoint: str | None,
    log_file: Path,
) -> None:
    """Submit detached; the probe follows the new job from now on."""
    probe.job_id = cluster.start_job(
        str(project_root() / job_file), args, savepoint=savepoint, log_file=log_file, wait=False
    )


def _stuck_transactions(bootstrap: str, prefix: str, topics: list[str]) -> list[str]:
    """Transactions of the run left open once its job stopped: lingering ones of its
    prefix (any age: after a stop with a savepoint none may be open) and Kafka's
    hanging ones on its topics (``find-hanging`` with no age threshold)."""
    from onceflow.ops.transactions import find_stuck

    return find_stuck(bootstrap, prefix, older_than_s=0, topics=topics).lines()


def _time_fired_faults(faults: list[dict[str, Any]], markers: Path, t0_wall: float) -> None:
    """An operator exception fires when its record arrives: its time is the marker's."""
    fired = {p.stem: float(p.read_text().strip() or 0) for p in markers.glob("*.fired")}
    for record in faults:
        if record["kind"] == "operator-exception":
            stem = marker_stem(record["detail"])
            record["fired"] = stem in fired
            if record["fired"]:
                record["at_s"] = round(fired[stem] - t0_wall, 2)


def verify(settings: VerifySettings, progress: bool = True) -> VerifyResult:
    """Run the protocol of the module docstring; see :class:`VerifyResult`."""
    from onceflow.runtime.topics import ensure_topics
    from onceflow.testing.drain import read_committed

    profile = settings.profile
    target: Target = TARGETS[settings.job]()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = settings.out_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    job_log = out_dir / "flink-client.log"
    result = VerifyResult(
        settings={**settings.__dict__, "profile": profile.__dict__, "out_dir": str(out_dir)}
    )
    started = time.monotonic()

    # The stack, the topics and the fault schedule.
    broker = LocalKafka()
    broker.up()
    bootstrap = broker.bootstrap
    cluster = LocalFlinkCluster(taskmanagers=settings.taskmanagers)
    cluster.up()
    topics = {role: f"verify-{stamp}-{role}" for role in target.topics}
    for role, (partitions, configs) in target.topics.items():
        ensure_topics(bootstrap, {topics[role]: configs}, partitions)
    postgres = _postgres(target, result)
    target.use_format(settings.value_format, _registry(settings, result), topics["in"])
    # Prepared transactions already there (another run's) are not this run's leftovers.
    prepared_before = _prepared_gids(target.pg_url) if target.pg_url else set()
    records = target.prepare(profile, settings.seed)
    kinds = fault_kinds(postgres is not None, profile.rescale)
    if settings.kinds is not None:
        kinds = _chosen_kinds(settings.kinds, kinds)
    faults = schedule(
        settings.seed, fault_count(profile.faults, kinds), records / profile.rate, kinds
    )
    fail_points = target.fail_points(
        [int(f.at_s * profile.rate) for f in faults if f.kind == "operator-exception"]
    )
    markers = out_dir / "fired"
    args = _job_args(settings, target, topics, out_dir, stamp, fail_points, bootstrap)

    probe = _JobProbe(cluster)
    sampler: _Sampler | None = None
    t0_wall = time.time()
    feeder_error: list[BaseException] = []
    try:
        # The job, then the input at the profile's rate, then the faults on schedule.
        _submit(cluster, probe, target.job_file, args, None, job_log)
        probe.wait_running_with_checkpoint(since=0)
        result.jobs.append({"job": probe.job_id, "submitted_at": 0.0, "from": None})
        t0, t0_wall = time.monotonic(), time.time()

        def feed() -> None:
            try:
                target.feed(bootstrap, topics["in"], profile.rate)
            except BaseException as exc:  # noqa: BLE001 - reported after the run
                feeder_error.append(exc)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        sampler = _Sampler(bootstrap, topics[target.watch], topics["in"], probe, t0)
        sampler.start()
        last_completed = probe.completed()
        for n, fault in enumerate(faults, 1):
            while time.monotonic() - t0 < fault.at_s:
                _progress(progress, t0, profile, sampler, n - 1, len(faults))
                time.sleep(1)
            if fault.kind != "operator-exception":
                probe.wait_running_with_checkpoint(since=last_completed)
            at = time.monotonic() - t0
            detail = _inject(
                fault, broker, postgres, cluster, probe, target, args, job_log, result, at,
                settings.parallelism,
            )  # fmt: skip
            record: dict[str, Any] = {"kind": fault.kind, "at_s": round(at, 2), "detail": detail}
            resubmitted = fault.kind.endswith("resume") or fault.kind == "rescale"
            if resubmitted:  # the new job's output comes after this (see stall_after)
                record["resumed_s"] = round(time.monotonic() - t0, 2)
            result.faults.append(record)
            log.info("fault %d/%d at %.1fs: %s (%s)", n, len(faults), at, fault.kind, detail)
            probe.wait_running_with_checkpoint(since=0 if resubmitted else -1)
            if fault.kind.startswith("postgres-") and target.pg_url:
                # The sink notices a lost connection only when it next writes or prepares:
                # two checkpoints after the server is back prove the job has recovered.
                _wait_recovered_from_postgres(probe)
            last_completed = probe.completed()
        feeder.join()
        if feeder_error:
            raise OnceflowError(f"feeding the input failed: {feeder_error[0]!r}")
        # Caught up when the committed output stops growing for a while.
        _wait_caught_up(progress, t0, profile, sampler, len(faults), probe)
        _stop_with_savepoint(probe)
    except OnceflowError as exc:
        if target.pg_url:
            raise _stalled(exc, target.pg_url) from exc
        raise
    finally:
        if sampler is not None:
            sampler.stop_event.set()
            sampler.join(timeout=10)
            result.samples = sampler.samples
        result.checkpoints = sorted(probe.checkpoints.values(), key=lambda c: c["trigger_ms"])
        with contextlib.suppress(OnceflowError):
            if probe.state() == "RUNNING" and probe.job_id:
                cluster.cancel(probe.job_id)
        cluster.down()

    _time_fired_faults(result.faults, markers, t0_wall)
    result.faults.sort(key=lambda f: float(f["at_s"]))
    checked, committed = target.check(bootstrap, topics, out_dir, progress)
    positions = [(r.partition, r.offset) for r in committed]
    for record in result.faults:
        # Seconds until output produced after the fault was committed (issue 13, part 5).
        record["stall_s"] = stall_after(
            float(record["at_s"]), result.samples, positions, record.get("resumed_s")
        )
    result.stalls = stalls_by_kind(result.faults)
    uncommitted = read_committed(
        bootstrap, topics[target.watch], quiet_ms=2000, progress=progress,
        isolation_level="read_uncommitted",
    )  # fmt: skip
    seen_uncommitted = {(r.partition, r.offset): r.value for r in uncommitted}
    aborted_read = sum(
        1 for r in committed if seen_uncommitted.get((r.partition, r.offset)) != r.value
    )
    result.counts = {
        **checked.counts,
        "output_uncommitted": len(uncommitted),
        "aborted_records": len(uncommitted) - len(committed),
        "faults": len(result.faults),
        "jobs_submitted": len(result.jobs),
        "checkpoints_completed": len(result.checkpoints),
        "restarts": _restarts(result.samples),
    }
    result.anomalies = {**checked.anomalies, "aborted-read": aborted_read}
    result.examples = checked.examples
    if settings.max_stall_s is not None:
        over = [f for f in result.faults if (f.get("stall_s") or 0) > settings.max_stall_s]
        result.anomalies["stall-over-bound"] = len(over)
        result.examples["stall-over-bound"] = [
            f"{f['kind']} at +{f['at_s']} s stalled {f['stall_s']} s" for f in over[:5]
        ]
    if settings.stall_targets:
        missed = over_target(result.stalls)
        result.anomalies["stall-over-target"] = len(missed)
        result.examples["stall-over-target"] = missed
    if target.pg_url:
        left = sorted(_prepared_gids(target.pg_url) - prepared_before)
        result.anomalies["prepared-left"] = len(left)
        result.examples["prepared-left"] = left[:5]
    result.hanging_transactions = _stuck_transactions(
        bootstrap, f"verify-{stamp}", sorted(topics.values())
    )
    result.duration_s = round(time.monotonic() - started, 1)
    return result


def _chosen_kinds(chosen: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``chosen`` when the target can take each of them (``--kinds``)."""
    refused = [kind for kind in chosen if kind not in allowed]
    if refused or not chosen:
        raise OnceflowError(
            f"fault kinds {refused or '(none)'} do not apply to this run; choose among "
            f"{', '.join(allowed)}"
        )
    return tuple(dict.fromkeys(chosen))


def _postgres(target: Target, result: VerifyResult) -> LocalPostgres | None:
    """The database of a target that writes PostgreSQL; the server when it is ours.

    :returns: the local server (PostgreSQL faults apply), or None when the target
        writes no table or writes ``$ONCEFLOW_PG_URL`` (a server we cannot restart).
    """
    if not target.writes_postgres:
        return None
    external = os.environ.get("ONCEFLOW_PG_URL")
    if external:
        target.pg_url = external
        result.settings["postgres"] = "$ONCEFLOW_PG_URL (no PostgreSQL faults)"
        log.warning("writing the database of ONCEFLOW_PG_URL: PostgreSQL faults are left out")
        return None
    server = LocalPostgres()
    server.up()
    target.pg_url = server.url
    result.settings["postgres"] = server.url
    return server


def _registry(settings: VerifySettings, result: VerifyResult) -> str | None:
    """The schema registry of an Avro run (``$ONCEFLOW_REGISTRY_URL`` or the local
    stack's, started when it is not running); None for JSON."""
    if settings.value_format != "avro":
        return None
    url = registry_url_or_local()
    result.settings["registry"] = url
    return url


def _stop_with_savepoint(probe: _JobProbe) -> str:
    """Stop the current job with a savepoint (retried across a failover) and wait until
    it has ended; returns the savepoint's path."""
    assert probe.job_id is not None
    return stop_with_savepoint(probe.rest, probe.job_id, run_dir("savepoints").as_uri())


def _prepared_gids(url: str) -> set[str]:
    """Global ids of the prepared (XA) transactions of ``url``'s database."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
        ).fetchall()
    return {str(gid) for (gid,) in rows}


def _wait_recovered_from_postgres(probe: _JobProbe, timeout: float = 120) -> None:
    """Until two checkpoints complete after a PostgreSQL fault (see :func:`_stalled`)."""
    probe.wait_running_with_checkpoint(since=probe.completed() + 1, timeout=timeout)


def _stalled(exc: OnceflowError, url: str) -> OnceflowError:
    """``exc`` (a job that did not recover) plus the database's prepared transactions.

    A transaction left prepared holds its row locks: the sink's next upsert of one
    of those keys waits on it, the checkpoint barrier never passes, and the job
    stalls without failing. The message lists what is prepared and since when.
    """
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT gid, prepared, now() - prepared FROM pg_prepared_xacts "
                "WHERE database = current_database() ORDER BY prepared"
            ).fetchall()
    except psycopg.Error:
        return exc
    listed = "; ".join(f"{gid} prepared at {at} ({age} ago)" for gid, at, age in rows)
    return OnceflowError(
        f"{exc}; prepared transactions: {listed or 'none'} (a transaction left prepared "
        "holds its row locks: the sink's next upsert of those keys waits on it and no "
        "checkpoint completes)"
    )


def _prepared(url: str) -> int:
    """Prepared (XA) transactions of ``url``'s database; -1 when it does not answer."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"
            ).fetchone()
    except psycopg.Error:
        return -1
    return int(row[0]) if row else 0


def _kill_postgres(postgres: LocalPostgres) -> str:
    """SIGKILL the postmaster, wait until it is gone, start the server again."""
    postgres.kill(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while postgres.status().alive and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    # A killed postmaster nobody reaps stays a zombie holding its lock: up() clears it.
    postgres.up()
    return f"postmaster SIGKILL, restarted; {_prepared(postgres.url)} prepared after restart"


def _restart_postgres_with_prepared(postgres: LocalPostgres, timeout: float = 20.0) -> str:
    """Stop the server (SIGINT) while the sink has an XA transaction prepared.

    The sink prepares at the checkpoint barrier and commits once the checkpoint
    completes: poll ``pg_prepared_xacts`` on one open connection and stop the server
    the moment one shows up, i.e. between the checkpoint and its commit. A fast
    shutdown keeps prepared transactions, so the restarted server still holds them
    and the job's recovery must commit them (or roll them back) exactly once.
    """
    import psycopg

    # Only a transaction prepared from now on counts: one left by an earlier run is no
    # transaction of this job's sink.
    before = _prepared_gids(postgres.url)
    pending = 0
    deadline = time.monotonic() + timeout
    with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
            ).fetchall()
            pending = len({str(gid) for (gid,) in rows} - before)
            if pending:
                break
            time.sleep(0.01)
    postgres.down()
    time.sleep(2)
    postgres.up()
    after = _prepared(postgres.url)
    return (
        f"SIGINT with {pending} prepared transaction(s) pending"
        f"{'' if pending else f' (none seen within {timeout:.0f} s)'}; restarted, "
        f"{after} still prepared"
    )


def _inject(
    fault: Fault,
    broker: LocalKafka,
    postgres: LocalPostgres | None,
    cluster: LocalFlinkCluster,
    probe: _JobProbe,
    target: Target,
    args: list[str],
    job_log: Path,
    result: VerifyResult,
    at: float,
    settings_parallelism: int,
) -> str:
    """Carry out one fault; returns what was done (for the report).

    ``rescale`` moves the job between ``settings_parallelism`` and one more.
    """
    kind = fault.kind
    if kind == "tm-kill":
        # A TaskManager that runs the job's tasks: killing an idle one tests nothing.
        pids: list[int] = []
        if probe.job_id is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):  # REST: any TM then
                pids = cluster.job_taskmanager_pids(probe.job_id)
        pids = pids or cluster.taskmanager_pids()
        if not pids:
            raise OnceflowError("no TaskManager to kill")
        victim = pids[int(at * 1000) % len(pids)]
        cluster.kill_taskmanager(victim, signal.SIGKILL)
        time.sleep(2)
        cluster.start_taskmanager()
        cluster.wait_ready(cluster.taskmanagers)
        return f"SIGKILL taskmanager pid {victim}, started a new one"
    if kind == "operator-exception":
        # Armed at submission: it fires when its record arrives (see fault["fired"]).
        return _next_fail_point(target.fail_flag, args, result)
    if kind.startswith("postgres-"):
        if postgres is None:
            raise OnceflowError(f"{kind} scheduled for a target that writes no local PostgreSQL")
        if kind == "postgres-kill":
            return _kill_postgres(postgres)
        return _restart_postgres_with_prepared(postgres)
    if kind in ("broker-term", "broker-kill"):
        if kind == "broker-term":
            broker.down()
        else:
            broker.kill(signal.SIGKILL)
            deadline = time.monotonic() + 30
            while broker.status().alive and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(3)
        broker.up()
        return f"broker {'SIGTERM' if kind == 'broker-term' else 'SIGKILL'}, down ~3 s, restarted"
    assert probe.job_id is not None
    old = probe.job_id
    if kind == "cancel-resume":
        cluster.cancel(old)
        wait_ended(probe.rest, old)
        path = probe.latest_checkpoint_path()
        if path is None:
            raise OnceflowError(f"job {old} has no retained checkpoint to resume from")
    else:
        path = _stop_with_savepoint(probe)
    rescaled = ""
    if kind == "rescale":
        # The later resumes keep the new parallelism: the args are the job's from now on.
        before = _parallelism(args)
        after = settings_parallelism + 1 if before == settings_parallelism else settings_parallelism
        _set_parallelism(args, after)
        rescaled = f" at parallelism {after} (was {before})"
    _submit(cluster, probe, target.job_file, args, path, job_log)
    result.jobs.append({"job": probe.job_id, "submitted_at": round(at, 2), "from": path})
    verb = "cancelled" if kind == "cancel-resume" else "stopped with a savepoint"
    return f"job {old} {verb}; resumed from {path}{rescaled}"


def _parallelism(args: list[str]) -> int:
    return int(args[len(args) - 1 - args[::-1].index("--parallelism") + 1])


def _set_parallelism(args: list[str], parallelism: int) -> None:
    """Set the job's ``--parallelism`` flag in ``args`` (in place)."""
    args[len(args) - 1 - args[::-1].index("--parallelism") + 1] = str(parallelism)


def _next_fail_point(flag: str, args: list[str], result: VerifyResult) -> str:
    points = [args[i + 1] for i, a in enumerate(args) if a == flag]
    used = sum(1 for f in result.faults if f["kind"] == "operator-exception")
    return points[used] if used < len(points) else "?"


def _restarts(samples: list[dict[str, Any]]) -> int:
    """Restarts summed over the jobs (each resubmission starts its own count)."""
    per_job: dict[str, int] = {}
    for s in samples:
        if "job" in s:
            per_job[s["job"]] = max(per_job.get(s["job"], 0), int(s.get("restarts", 0)))
    return sum(per_job.values())


def _progress(
    enabled: bool, t0: float, profile: Profile, sampler: _Sampler, faults_done: int, faults: int
) -> None:
    now = time.monotonic() - t0
    if not enabled or int(now) % 5:
        return
    produced = min(profile.records, int(now * profile.rate))
    last = sampler.samples[-1] if sampler.samples else {}
    print(
        f"  t={now:5.0f}s fed ~{produced:,}/{profile.records:,} ({profile.rate:,.0f}/s) "
        f"committed offsets {last.get('committed_offsets', '?')} job {last.get('state', '?')} "
        f"checkpoints {last.get('completed', '?')} faults {faults_done}/{faults}",
        flush=True,
    )


def _wait_caught_up(
    progress: bool, t0: float, profile: Profile, sampler: _Sampler, faults: int, probe: _JobProbe
) -> None:
    """Until the committed output offsets have not moved across 3 checkpoints."""
    stable_since: float | None = None
    last_value = -1
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _progress(progress, t0, profile, sampler, faults, faults)
        value = sampler.samples[-1].get("committed_offsets", -1) if sampler.samples else -1
        if value != last_value:
            last_value, stable_since = value, time.monotonic()
        elif stable_since is not None and time.monotonic() - stable_since > 3 * 2.5:
            return
        time.sleep(1)
    raise OnceflowError("the output did not catch up within 10 minutes")

"""The local Kafka broker: one KRaft node on localhost, configured for transactions.

``onceflow stack up`` formats the storage once, starts ``kafka.Kafka`` from the jars
that ``make jars`` resolved, and returns only when a transactional producer has
committed a transaction, so a caller can run an exactly-once job right away.
Data, config and logs live in ``run/kafka-<port>/`` (git-ignored). The broker runs
in its own process group; ``down`` stops it by the pid it recorded.

Single-node settings that transactions need (a default broker refuses them):
the transaction state log and offsets topic with replication factor 1 and min ISR 1,
and ``transaction.max.timeout.ms`` at least Flink KafkaSink's default
``transaction.timeout.ms`` (1 h), or every transaction of a default sink is refused.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import time
import uuid
from dataclasses import dataclass

from onceflow.errors import OnceflowError
from onceflow.local.processes import RecordedServer, ServiceStatus, port_open
from onceflow.runtime.java import classpath, java_executable, run_java_main
from onceflow.runtime.paths import run_dir

__all__ = ["BrokerSettings", "LocalKafka", "default_port"]

log = logging.getLogger(__name__)

READY_TOPIC = "onceflow-stack-ready"


def default_port() -> int:
    """``$ONCEFLOW_KAFKA_PORT`` or 9092."""
    return int(os.environ.get("ONCEFLOW_KAFKA_PORT", "9092"))


@dataclass(frozen=True)
class BrokerSettings:
    """What the local broker listens on and how big it is.

    :param port: client (PLAINTEXT) port on 127.0.0.1.
    :param controller_port: KRaft controller port; ``port + 1`` when None.
    :param heap: JVM heap (-Xmx and -Xms).
    :param transaction_max_timeout_ms: the broker's ``transaction.max.timeout.ms``;
        the largest ``transaction.timeout.ms`` a producer may ask for.
    """

    port: int = 9092
    controller_port: int | None = None
    heap: str = "1g"
    transaction_max_timeout_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise OnceflowError(f"broker port {self.port} is not a TCP port (1-65535)")

    @property
    def controller(self) -> int:
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"


class LocalKafka(RecordedServer):
    """A single-node KRaft Kafka broker owned by this checkout.

    Failure behaviour: ``up`` raises :class:`OnceflowError` with one line that says
    what to do when the JDK or the jars are missing, a port is taken by another
    process, or the broker does not become transaction-ready within the timeout
    (the message names the broker log).
    """

    name = "kafka"
    settings: BrokerSettings

    def __init__(self, settings: BrokerSettings | None = None) -> None:
        self.settings = settings or BrokerSettings(port=default_port())
        self.home = run_dir(f"kafka-{self.settings.port}")
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.properties"
        self.log_file = self.home / "server.log"
        self.stdout_file = self.home / "kafka.out"
        self.pid_file = self.home / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    @property
    def address(self) -> str:
        return self.bootstrap

    # The steps of up ------------------------------------------------------------------
    def _refuse_taken_ports(self) -> None:
        """Refuse to start when another process holds the client or controller port."""
        for port in (self.settings.port, self.settings.controller):
            if port_open(port):
                raise OnceflowError(
                    f"port {port} is already in use by another process; stop it or choose "
                    f"another broker port (--port / ONCEFLOW_KAFKA_PORT)"
                )

    def _write_config(self) -> None:
        """Write the single-node KRaft configuration transactions need, and its log4j file."""
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.port},CONTROLLER://127.0.0.1:{s.controller}",
            "advertised.listeners": f"PLAINTEXT://localhost:{s.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: internal topics cannot have more replicas than brokers.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Flink's KafkaSink asks for transaction.timeout.ms = 1 h by default.
            "transaction.max.timeout.ms": str(s.transaction_max_timeout_ms),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "group.initial.rebalance.delay.ms": "0",
            # A broker that restarts after a crash registers again only once the
            # controller has expired its previous session (DUPLICATE_BROKER_REGISTRATION
            # until then): 9 s by default, the largest share of a broker bounce. 3 s
            # with a heartbeat every 0.5 s: a broker process paused over 3 s (GC, an
            # overloaded machine) is fenced and must register again.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            "log.retention.hours": "24",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log4j_file.write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = INFO\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )

    def _format_storage(self) -> None:
        """Format the KRaft storage with a new cluster id, once."""
        if (self.data_dir / "meta.properties").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = run_java_main(
            "kafka.tools.StorageTool",
            ["format", "-t", cluster_id, "-c", str(self.config_file)],
            jvm_opts=("-Xmx256m", f"-Dlog4j2.configurationFile=file:{self.log4j_file}"),
        )
        if result.returncode != 0:
            raise OnceflowError(
                f"formatting the broker storage in {self.data_dir} failed: "
                f"{(result.stderr or result.stdout).strip()[-400:]}"
            )

    def up(self, timeout: float = 120.0) -> ServiceStatus:
        """Start the broker (harmless when it runs) and wait until transactions commit.

        :param timeout: seconds to wait for a committed transaction.
        :raises OnceflowError: JDK/jars missing, port in use, or not ready in time.
        """
        current = self.status()
        if current.running:
            log.info("broker already running (pid %s)", current.pid)
            self.wait_ready(timeout)
            return current
        if current.alive:
            # Started earlier and still coming up: wait for it rather than start a second.
            self.wait_ready(timeout)
            return self.status()
        java = java_executable()
        cp = classpath("kafka")
        self._refuse_taken_ports()
        self._write_config()
        self._format_storage()
        proc = self._start_process(java, cp)
        log.info("started broker pid %s, log %s", proc.pid, self.log_file)
        self.wait_ready(timeout, proc=proc)
        return self.status()

    def _start_process(self, java: str, cp: str) -> subprocess.Popen[bytes]:
        """Start ``kafka.Kafka`` in its own session and record its pid."""
        cmd = [
            java,
            f"-Xmx{self.settings.heap}",
            f"-Xms{self.settings.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{self.log4j_file}",
            f"-Dkafka.logs.dir={self.home}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(self.config_file),
        ]
        with open(self.stdout_file, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Block until a transactional producer commits on the broker.

        :raises OnceflowError: the process died or the deadline passed.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise OnceflowError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"see {self.log_file} and {self.stdout_file}"
                )
            if port_open(self.settings.port):
                try:
                    commit_probe_transaction(self.bootstrap)
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                    last_error = exc
            time.sleep(0.5)
        raise OnceflowError(
            f"the broker at {self.bootstrap} could not commit a transaction within "
            f"{timeout:.0f} s (last error: {last_error}); see {self.log_file}"
        )


def commit_probe_transaction(bootstrap: str) -> None:
    """Commit one transaction with a kafka-python transactional producer.

    :raises Exception: whatever kafka-python raises while the broker is not ready.
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        # Brokers with auto.create.topics.enable=false need the topic made first.
        admin.create_topics({READY_TOPIC: {"num_partitions": 1, "replication_factor": 1}})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id="onceflow-stack-ready",
        enable_idempotence=True,
        request_timeout_ms=10_000,
        max_block_ms=10_000,
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(READY_TOPIC, b"ready")
        producer.commit_transaction()
    finally:
        producer.close(timeout=5)

"""The local schema registry: Apicurio Registry on a loopback port, Confluent-compatible.

``onceflow stack up --registry`` starts it next to the broker. Its distribution (a tar.gz
holding a Quarkus ``-runner.jar`` and ``lib/``, pinned in ``java/registry/pom.xml``) is
copied by Maven into the jar cache and unpacked there once; it runs on Java 17. Clients
use the Confluent Schema Registry API it serves under ``/apis/ccompat/v7``
(:attr:`LocalRegistry.url`): Flink's ``avro-confluent`` format
(``'avro-confluent.url'``) and :class:`onceflow.avro.registry.SchemaRegistry`.

Storage is an H2 database file in ``run/registry-<port>/data`` rather than Apicurio's
default in-memory H2: the broker keeps its topics across ``stack down``/``up``, and a
record is readable only while the registry still knows the schema id in its framing.
The log is ``run/registry-<port>/registry.log``. The registry runs in its own process
group; ``down`` stops it by the pid it recorded.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from onceflow.avro.registry import RegistryError, RegistryUnavailable, SchemaRegistry
from onceflow.errors import OnceflowError
from onceflow.local.processes import RecordedServer, ServiceStatus, pid_alive, port_open
from onceflow.runtime.java import java_executable, resolve_jars
from onceflow.runtime.paths import run_dir

__all__ = [
    "LocalRegistry",
    "RegistrySettings",
    "default_registry_port",
    "registry_distribution",
]

log = logging.getLogger(__name__)

CCOMPAT_PATH = "/apis/ccompat/v7"
_UNPACKED = "app"


def default_registry_port() -> int:
    """``$ONCEFLOW_REGISTRY_PORT`` or 8085.

    Not 8080 (Apicurio's own default, and most development servers'), not 8081 (Flink's
    REST API and Confluent's registry), 8082/8083 (Kafka REST proxy and Connect).
    """
    return int(os.environ.get("ONCEFLOW_REGISTRY_PORT", "8085"))


@dataclass(frozen=True)
class RegistrySettings:
    """What the local registry listens on and how big it is.

    :param port: HTTP port on 127.0.0.1 (the API and the health checks).
    :param management_port: Quarkus' management interface port; ``port + 1`` when None.
        Apicurio 3.0.9 does not open it (health is served on ``port``); it is set so that
        a build which does never takes Quarkus' default 9000 on every interface.
    :param heap: JVM maximum heap (-Xmx).
    """

    port: int = 8085
    management_port: int | None = None
    heap: str = "256m"

    def __post_init__(self) -> None:
        for name, value in (("port", self.port), ("management_port", self.management_port)):
            if value is not None and not 0 < value < 65536:
                raise OnceflowError(f"registry {name} {value} is not a TCP port (1-65535)")

    @property
    def management(self) -> int:
        return self.management_port if self.management_port is not None else self.port + 1

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"


def registry_distribution() -> Path:
    """The unpacked registry distribution's ``-runner.jar``: Maven copies the pinned
    tar.gz into the jar cache (once), and it is unpacked next to it (once).

    :raises OnceflowError: Maven is missing or failed, or the archive is not the expected
        Quarkus distribution.
    """
    folder = resolve_jars("registry")
    archives = sorted(folder.glob("*.tar.gz"))
    if len(archives) != 1:
        raise OnceflowError(
            f"expected one registry archive in {folder}, found {len(archives)}: "
            "run `onceflow jars --kind registry --force`"
        )
    archive = archives[0]
    target = folder / _UNPACKED
    stamp = target / ".unpacked"
    if not (stamp.is_file() and stamp.read_text().strip() == archive.name):
        _unpack(archive, target)
        stamp.write_text(archive.name + "\n")
    runners = sorted(target.glob("*-runner.jar"))
    if len(runners) != 1 or not (target / "lib").is_dir():
        raise OnceflowError(
            f"{archive.name} did not unpack to one *-runner.jar and lib/ in {target}: "
            "run `onceflow jars --kind registry --force`"
        )
    return runners[0]


def _unpack(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target`` atomically (a half-extracted tree never shows)."""
    log.info("unpacking %s into %s", archive.name, target)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, links out, devices
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OnceflowError(
            f"unpacking {archive} failed ({exc}); run `onceflow jars --kind registry --force`"
        ) from exc
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


class LocalRegistry(RecordedServer):
    """An Apicurio Registry owned by this checkout.

    Failure behaviour: ``up`` raises :class:`OnceflowError` with one line saying what to do
    when the JDK or Maven is missing, the port is taken by another process, the process
    exits while starting (the message quotes the log's last line) or the API does not
    answer in time (the message names the log).
    """

    name = "registry"
    settings: RegistrySettings

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings(port=default_registry_port())
        self.home = run_dir(f"registry-{self.settings.port}")
        self.data_dir = self.home / "data"
        self.log_file = self.home / "registry.log"
        self.pid_file = self.home / "registry.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API (``avro-confluent.url``, ``SchemaRegistry(url)``)."""
        return self.settings.url

    @property
    def address(self) -> str:
        return self.url

    def command(self, java: str, runner: Path) -> list[str]:
        """The JVM command line that runs the registry from its ``runner`` jar."""
        s = self.settings
        return [
            java,
            f"-Xmx{s.heap}",
            "-XX:+UseSerialGC",  # one small heap, two cores shared with Kafka and Flink
            "-XX:TieredStopAtLevel=1",  # C1 only: starts faster; the registry is not hot
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={self.home}",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={s.port}",
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={s.management}",
            # A file, not Apicurio's in-memory default: schema ids outlive a restart, as
            # the broker's topics that carry them do. WRITE_DELAY=0: each commit is on disk
            # when the API answers (H2 waits up to 500 ms by default: a crash in that window
            # lost the registration and the next schema reused its id).
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.data_dir / 'registry'};WRITE_DELAY=0",
            # As Confluent's registry does: one schema, one id, however its text is laid out
            # (Apicurio compares the text by default, so reformatting registers a new id).
            "-Dapicurio.ccompat.use-canonical-hash=true",
            "-Dquarkus.log.console.color=false",
            "-jar",
            str(runner),
        ]

    def start(self) -> None:
        """Spawn the registry without waiting for it (``up`` waits); harmless when it runs.

        Lets ``stack up`` overlap the registry's start-up with the broker's.

        :raises OnceflowError: JDK or Maven missing, archive broken, port in use.
        """
        current = self.status()
        if current.alive:
            return
        if port_open(self.settings.port):
            raise OnceflowError(
                f"port {self.settings.port} is already in use by another process; stop it or "
                "choose another registry port (--registry-port / ONCEFLOW_REGISTRY_PORT)"
            )
        java = java_executable()
        runner = registry_distribution()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                self.command(java, runner),
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        log.info("started the schema registry pid %s, log %s", self._proc.pid, self.log_file)

    def up(self, timeout: float = 120.0) -> ServiceStatus:
        """Start the registry (harmless when it runs) and wait until its API answers.

        :raises OnceflowError: see :meth:`start`; or it exited, or did not answer in time.
        """
        self.start()
        self.wait_ready(timeout)
        return self.status()

    def wait_ready(self, timeout: float) -> None:
        """Block until the Confluent-compatible API lists subjects.

        :raises OnceflowError: the process exited or the deadline passed.
        """
        client = SchemaRegistry(self.url, timeout=5.0)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._exited():
                raise OnceflowError(
                    f"the schema registry exited while starting ({self._last_log_line()}); "
                    f"see {self.log_file}"
                )
            if port_open(self.settings.port):
                try:
                    client.subjects()
                    return
                except (RegistryUnavailable, RegistryError) as exc:
                    last_error = exc
            time.sleep(0.25)
        raise OnceflowError(
            f"the schema registry at {self.url} did not answer within {timeout:.0f} s "
            f"(last error: {last_error}); see {self.log_file}"
        )

    def _exited(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        pid = self.read_pid()
        return pid is None or not pid_alive(pid)

    def _last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln]
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines[-200:]):
            if "UnsupportedClassVersionError" in line:
                return "it needs Java 17 or later; set JAVA_HOME to a JDK 17"
            if "Exception" in line or "ERROR" in line:
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "empty log"

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()


def registry_url_or_local() -> str:
    """``$ONCEFLOW_REGISTRY_URL``, or the local stack's registry (started when it is not
    running): where the verifier's and the benchmark's Avro runs register their schemas.

    :raises OnceflowError: the local registry cannot start (see :meth:`LocalRegistry.up`).
    """
    url = os.environ.get("ONCEFLOW_REGISTRY_URL")
    if url:
        return url
    registry = LocalRegistry()
    registry.up()
    return registry.url

"""The local PostgreSQL server: a private PostgreSQL 15 cluster on a loopback port.

``onceflow stack up`` starts it next to the broker: ``initdb`` once, then ``pg_ctl
start``, and returns when a client can connect to the ``onceflow`` database. Data,
socket and log live in ``run/postgres-<port>/`` (git-ignored). ``initdb`` and
``pg_ctl`` refuse to run as root: as root they run as the ``postgres`` user
(``runuser``), which then owns that folder.

Settings the exactly-once JDBC sink needs (a default server refuses it):
``max_prepared_transactions > 0`` (XA prepares one transaction per subtask and
checkpoint; with 0 every prepare fails and the job restarts forever), and
``max_connections`` large enough for one pooled connection per open transaction
(the sink uses a connection per XA transaction on PostgreSQL).

Users point jobs at their own database with a URL instead; nothing here is needed then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from onceflow.errors import OnceflowError
from onceflow.local.processes import RecordedServer, ServiceStatus, pid_alive, port_open
from onceflow.runtime.paths import run_dir

__all__ = [
    "PG_BIN",
    "LocalPostgres",
    "PostgresSettings",
    "default_pg_port",
]

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("ONCEFLOW_PG_BIN", "/usr/lib/postgresql/15/bin"))
"""Server binaries (Debian's ``postgresql`` package); ``$ONCEFLOW_PG_BIN`` overrides."""


def default_pg_port() -> int:
    """``$ONCEFLOW_PG_PORT`` or 5433 (next to a system server on 5432)."""
    return int(os.environ.get("ONCEFLOW_PG_PORT", "5433"))


@dataclass(frozen=True)
class PostgresSettings:
    """What the local server listens on and how many transactions it holds.

    :param port: TCP port on 127.0.0.1.
    :param user: the superuser ``initdb`` creates (trust authentication, loopback only).
    :param database: the database created for jobs and tests.
    :param max_connections: the server's ``max_connections``; the exactly-once sink
        holds up to (checkpoints in flight + 1) connections per subtask.
    :param max_prepared_transactions: the server's ``max_prepared_transactions``; must
        be > 0 for XA, and at least the number of concurrently prepared transactions.
    """

    port: int = 5433
    user: str = "onceflow"
    database: str = "onceflow"
    max_connections: int = 100
    max_prepared_transactions: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise OnceflowError(f"PostgreSQL port {self.port} is not a TCP port (1-65535)")
        if self.max_prepared_transactions < 1:
            raise OnceflowError(
                "max_prepared_transactions must be > 0: the exactly-once JDBC sink prepares "
                "an XA transaction at every checkpoint"
            )

    @property
    def url(self) -> str:
        """A libpq/psycopg URL of the database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"


class LocalPostgres(RecordedServer):
    """A private PostgreSQL cluster owned by this checkout.

    Failure behaviour: ``up`` raises :class:`OnceflowError` with one line saying what
    to do when the binaries are missing, the port is taken by another process,
    ``initdb`` fails, or the server does not accept connections in time (the message
    names the server log).
    """

    name = "postgres"
    # Fast shutdown: roll back sessions, keep prepared transactions. PostgreSQL records
    # its own pid (postmaster.pid) and the postmaster is signalled alone.
    stop_signal = signal.SIGINT
    signal_group = False
    settings: PostgresSettings

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self.settings = settings or PostgresSettings(port=default_pg_port())
        self.home = run_dir(f"postgres-{self.settings.port}")
        self.data_dir = self.home / "data"
        self.log_file = self.home / "postgres.log"
        self.pid_file = self.data_dir / "postmaster.pid"

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def address(self) -> str:
        return self.url

    # Helpers ------------------------------------------------------------------------
    def _as_server_user(self, argv: list[str]) -> list[str]:
        """``initdb``/``pg_ctl`` refuse root: run them as ``postgres`` when we are root."""
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser is None:
            raise OnceflowError(
                "running as root but `runuser` is missing: PostgreSQL's initdb/pg_ctl refuse "
                "root; install util-linux or run onceflow as a normal user"
            )
        return [runuser, "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], what: str, timeout: float) -> None:
        result = subprocess.run(
            self._as_server_user(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise OnceflowError(
                f"{what} failed (exit {result.returncode}): {detail[-1] if detail else ''}; "
                f"see {self.log_file}"
            )

    def _binary(self, name: str) -> str:
        path = PG_BIN / name
        if not path.is_file():
            raise OnceflowError(
                f"{path} is missing: PostgreSQL 15 is not installed; run `make setup` "
                "(apt-get install postgresql) or set ONCEFLOW_PG_BIN to its bin folder"
            )
        return str(path)

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _forget(self) -> None:
        """The postmaster removes its pid file; a stale one is cleared before a start."""

    # The steps of up, in order -------------------------------------------------------
    def _prepare_home(self) -> None:
        """Give the server user its folder (as root: ``postgres`` owns it)."""
        if os.geteuid() == 0:
            # The server user must reach its folder; the parents (run/, the checkout)
            # only need to be traversable.
            shutil.chown(self.home, user="postgres", group="postgres")
            self.home.chmod(0o700)

    def _clear_stale_lock(self, timeout: float = 30.0) -> None:
        """Remove the locks (``postmaster.pid``, the socket's ``.lock``) left by a
        postmaster that died (e.g. SIGKILL).

        PostgreSQL removes a stale lock itself unless its pid still answers a signal,
        which a killed postmaster nobody reaps (a zombie) does: then it refuses to
        start. The lock also guards against backends of the old server still running;
        they exit when they notice their postmaster is gone, so wait for every live
        process working in the data folder (their current directory) to end first.
        """
        lock = self.data_dir / "postmaster.pid"
        socket_lock = self.home / f".s.PGSQL.{self.settings.port}.lock"
        if not lock.is_file() and not socket_lock.is_file():
            return
        deadline = time.monotonic() + timeout
        while (left := self._processes_in_data_dir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            raise OnceflowError(
                f"processes {left} of a previous PostgreSQL server still use {self.data_dir}; "
                "stop them (onceflow stack down) before starting it again"
            )
        log.info("removing the stale locks of a server that is gone (%s)", lock)
        lock.unlink(missing_ok=True)
        socket_lock.unlink(missing_ok=True)

    def _processes_in_data_dir(self) -> list[int]:
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == self.data_dir and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
        return found

    def _init_cluster(self) -> None:
        """Create the cluster with ``initdb``, once (trust authentication, UTF-8)."""
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self._run(
            [
                self._binary("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.settings.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            "initdb",
            timeout=120,
        )

    def _start_server(self, timeout: float) -> None:
        """Start the postmaster on the loopback port with the settings XA needs."""
        s = self.settings
        options = " ".join(
            [
                f"-p {s.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.home}",
                f"-c max_connections={s.max_connections}",
                # XA: PREPARE TRANSACTION at each checkpoint needs slots.
                f"-c max_prepared_transactions={s.max_prepared_transactions}",
            ]
        )
        self._run(
            [
                self._binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                options,
                "start",
            ],
            "pg_ctl start",
            timeout=timeout + 10,
        )

    def _ensure_database(self) -> None:
        """Create the jobs' database if it is missing."""
        import psycopg

        admin = f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.settings.database}"')

    def up(self, timeout: float = 60.0) -> ServiceStatus:
        """Start the server (harmless when it runs) and create the database.

        :raises OnceflowError: binaries missing, port in use, initdb/start failed.
        """
        current = self.status()
        if not current.alive:
            if port_open(self.settings.port):
                raise OnceflowError(
                    f"port {self.settings.port} is already in use by another process; stop it "
                    "or choose another PostgreSQL port (--pg-port / ONCEFLOW_PG_PORT)"
                )
            self._prepare_home()
            self._clear_stale_lock()
            self._init_cluster()
            self._start_server(timeout)
            log.info("started PostgreSQL on port %s, log %s", self.settings.port, self.log_file)
        self.wait_ready(timeout)
        self._ensure_database()
        return self.status()

    def wait_ready(self, timeout: float) -> None:
        """Block until a client can run a query on the server.

        :raises OnceflowError: the deadline passed.
        """
        import psycopg

        admin = f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/postgres"
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(admin, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
            time.sleep(0.3)
        raise OnceflowError(
            f"PostgreSQL on port {self.settings.port} accepted no connection within "
            f"{timeout:.0f} s (last error: {last_error}); see {self.log_file}"
        )

"""Small process and port probes shared by the local servers' lifecycles."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

__all__ = ["RecordedServer", "ServiceStatus", "pid_alive", "port_open", "stop_process"]


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` found for a local server: the recorded pid, whether it lives,
    whether its port answers.

    :param name: the service (``kafka``, ``postgres``).
    :param address: where clients reach it (bootstrap servers, a database URL).
    """

    name: str
    pid: int | None
    alive: bool
    listening: bool
    address: str
    log_file: Path

    @property
    def running(self) -> bool:
        return self.alive and self.listening

    def render(self) -> str:
        if self.running:
            return f"{self.name}: running (pid {self.pid}) at {self.address}; log {self.log_file}"
        if self.alive:
            return f"{self.name}: starting or unhealthy (pid {self.pid}); log {self.log_file}"
        return f"{self.name}: stopped ({self.address}); log {self.log_file}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (killed but not reaped) still answers kill(0): ask /proc.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                # local address "ADDR:PORT" in hex, state 0A = LISTEN, the inode
                if (
                    len(parts) > 9
                    and parts[3] == "0A"
                    and int(parts[1].rsplit(":", 1)[1], 16) == port
                ):
                    inodes.add(parts[9])
    return inodes


def socket_owner(port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` listens on TCP ``port`` (Linux /proc; None when none does)."""
    inodes = _listening_inodes(port)
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
    return None


def stop_process(pid: int, send: Callable[[int], None], first: int, timeout: float) -> None:
    """Stop ``pid``: ``send(first)``, wait up to ``timeout`` s, then SIGKILL and wait.

    :param send: delivers a signal (to the process or to its group).
    """
    send(first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        send(signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.1)


class _Listens(Protocol):
    @property
    def port(self) -> int: ...


class RecordedServer:
    """A local server whose pid is recorded in a file: its status, stop and signals.

    A subclass names itself (``name``), holds its ``settings`` (with the ``port`` it
    listens on), says where clients reach it (``address``) and how it stops (``stop_signal``; the
    signals go to its process group when ``signal_group``, the server having been
    started as a session leader, else to the pid alone).
    """

    name: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM
    signal_group: ClassVar[bool] = True
    settings: _Listens
    log_file: Path
    #: The file the server's pid is recorded in.
    pid_file: Path

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def address(self) -> str:
        raise NotImplementedError

    def read_pid(self) -> int | None:
        """The recorded pid (None when nothing is recorded)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def status(self) -> ServiceStatus:
        pid = self.read_pid()
        return ServiceStatus(
            name=self.name,
            pid=pid,
            alive=pid is not None and pid_alive(pid),
            listening=port_open(self.port),
            address=self.address,
            log_file=self.log_file,
        )

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the server by its recorded pid: ``stop_signal``, then SIGKILL after
        ``timeout``.

        :returns: True when a running server was stopped.
        """
        pid = self.read_pid()
        if pid is None or not pid_alive(pid):
            self._forget()
            return False
        stop_process(pid, self.kill, self.stop_signal, timeout)
        self._reap()
        self._forget()
        return True

    def kill(self, sig: int) -> None:
        """Send ``sig`` to the server (fault injection uses SIGKILL)."""
        pid = self.read_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.signal_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _reap(self) -> None:
        """Collect the stopped process where this object started it."""

    def _forget(self) -> None:
        """Drop the record of a server that no longer runs."""
        self.pid_file.unlink(missing_ok=True)

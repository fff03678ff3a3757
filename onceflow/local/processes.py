"""Small process and port probes shared by the local servers' lifecycles."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServiceStatus", "pid_alive", "port_open", "stop_process"]


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

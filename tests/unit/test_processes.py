"""Finding which local process listens on a port (the fault injectors' TaskManager victim)."""

from __future__ import annotations

import os
import socket

from onceflow.local.processes import socket_owner


def test_socket_owner_names_the_listening_process_only() -> None:
    with socket.socket() as listening, socket.socket() as bound_only:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        bound_only.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        assert socket_owner(port, [os.getpid()]) == os.getpid()
        # Not listening: a bound socket is no server.
        assert socket_owner(bound_only.getsockname()[1], [os.getpid()]) is None
        # A process that does not hold the socket is not its owner.
        assert socket_owner(port, [os.getppid()]) is None

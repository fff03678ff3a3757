"""The local PostgreSQL server's lifecycle on a port of its own (real initdb and pg_ctl)."""

from __future__ import annotations

import shutil
import socket

import psycopg
import pytest

from onceflow.errors import OnceflowError
from onceflow.local.postgres import LocalPostgres, PostgresSettings
from onceflow.testing.harness import free_port


def test_up_is_idempotent_and_sized_for_xa_then_down_stops_it() -> None:
    server = LocalPostgres(PostgresSettings(port=free_port(), max_prepared_transactions=7))
    try:
        first = server.up()
        assert first.running, first.render()
        again = server.up()
        assert again.pid == first.pid, "a second up must not start a second server"
        with psycopg.connect(server.url) as conn:
            row = conn.execute("SHOW max_prepared_transactions").fetchone()
            assert row is not None and row[0] == "7"
            listen = conn.execute("SHOW listen_addresses").fetchone()
            assert listen is not None and listen[0] == "127.0.0.1"
        assert server.down() is True
        assert not server.status().alive
        assert server.down() is False
    finally:
        server.down()
        shutil.rmtree(server.home, ignore_errors=True)


def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalPostgres(PostgresSettings(port=port))
        try:
            with pytest.raises(OnceflowError, match="already in use.*--pg-port"):
                server.up(timeout=5)
        finally:
            shutil.rmtree(server.home, ignore_errors=True)

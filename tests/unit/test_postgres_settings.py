"""The local PostgreSQL server's settings (pure; the server itself is exercised by the ITs)."""

from __future__ import annotations

import pytest

from onceflow.errors import OnceflowError
from onceflow.local.postgres import PostgresSettings, default_pg_port


def test_url_is_loopback_with_the_configured_port_and_database() -> None:
    settings = PostgresSettings(port=6543, user="u", database="d")
    assert settings.url == "postgresql://u@127.0.0.1:6543/d"


def test_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEFLOW_PG_PORT", "6544")
    assert default_pg_port() == 6544
    monkeypatch.delenv("ONCEFLOW_PG_PORT")
    assert default_pg_port() == 5433


@pytest.mark.parametrize("kwargs", [{"port": 0}, {"max_prepared_transactions": 0}])
def test_refuses_settings_the_sink_cannot_use(kwargs: dict[str, int]) -> None:
    with pytest.raises(OnceflowError):
        PostgresSettings(**kwargs)

"""A job's ``--pg-*`` settings: parsing, redaction, the sink spec per guarantee."""

from __future__ import annotations

import pytest

from onceflow.errors import OnceflowError
from onceflow.jobs.dedup import parse_config
from onceflow.runtime.pgoutput import AT_LEAST_ONCE_FLUSH_MS, PostgresOutput, pop_postgres_output

REQUIRED = ["--input-topic", "in", "--output-topic", "out", "--dlq-topic", "dlq"]
URL = "postgresql://app:hunter2@db:5432/shop"


def test_no_table_output_unless_asked() -> None:
    options = {"input_topic": "in"}
    assert pop_postgres_output(options) is None
    assert parse_config(REQUIRED).ledger_spec() is None


def test_flags_build_a_redacted_output_and_leave_the_other_options() -> None:
    options = {"pg_url": URL, "pg_table": "t", "pg_parallelism": 2, "input_topic": "in"}
    out = pop_postgres_output(options)
    assert options == {"input_topic": "in"}
    assert out == PostgresOutput(url=URL, table="t", parallelism=2)
    assert "hunter2" not in repr(out) and "app:***@db" in repr(out)


def test_job_config_repr_never_shows_the_password() -> None:
    cfg = parse_config([*REQUIRED, "--pg-url", URL, "--pg-table", "ledger", "--pg-create-table"])
    assert "hunter2" not in repr(cfg)
    spec = cfg.ledger_spec()
    assert spec is not None and spec.create_table and spec.mode == "append"
    assert [c.name for c in spec.columns] == ["id", "record"]


def test_half_a_table_output_is_refused() -> None:
    with pytest.raises(OnceflowError, match="both --pg-url and --pg-table"):
        pop_postgres_output({"pg_table": "t"})
    with pytest.raises(OnceflowError, match="postgresql://"):
        pop_postgres_output({"pg_url": "mysql://h/d", "pg_table": "t"})


def test_guarantee_decides_retries_and_flushing() -> None:
    out = PostgresOutput(url=URL, table="t")
    eos = parse_config([*REQUIRED, "--pg-url", URL, "--pg-table", "t"]).ledger_spec()
    assert eos is not None and eos.max_retries == 0 and eos.batch_interval_ms == 0
    alo = out.spec(columns=eos.columns, mode="append", guarantee="at-least-once", uid="ledger-sink")
    assert alo.max_retries == 3 and alo.batch_interval_ms == AT_LEAST_ONCE_FLUSH_MS

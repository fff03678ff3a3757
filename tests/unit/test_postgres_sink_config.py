"""The PostgreSQL sink's pure parts: URL parsing and redaction, SQL, refusals."""

from __future__ import annotations

import dataclasses

import pytest

from onceflow.errors import OnceflowError
from onceflow.sinks.postgres import (
    PgColumn,
    PostgresSinkSpec,
    ServerFacts,
    create_table_sql,
    insert_sql,
    parse_url,
    validate_postgres_sink,
)

URL = "postgresql://app:s3cr%40t@db.example:6432/shop?sslmode=require"
ENTITY_COLUMNS = (
    PgColumn("key", "STRING", False),
    PgColumn("version", "BIGINT", False),
    PgColumn("deleted", "BOOLEAN", False),
    PgColumn("payload", "JSONB"),
)
FACTS = ServerFacts(
    server_version="15.14",
    max_prepared_transactions=100,
    max_connections=100,
    reserved_connections=3,
    connections_in_use=7,
    prepared_transactions=0,
    columns={"key": "text", "version": "bigint", "deleted": "boolean", "payload": "jsonb"},
    primary_key=("key",),
)


def versioned(**changes: object) -> PostgresSinkSpec:
    spec = PostgresSinkSpec(
        url=URL, table="entities", columns=ENTITY_COLUMNS, mode="versioned", key=("key",)
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def check(spec: PostgresSinkSpec, facts: ServerFacts = FACTS, parallelism: int = 2) -> None:
    validate_postgres_sink(spec, facts, parallelism=parallelism, checkpoint_interval_ms=5000)


def test_url_parts_and_jdbc_url_without_credentials() -> None:
    target = parse_url(URL)
    assert (target.host, target.port, target.database) == ("db.example", 6432, "shop")
    assert (target.user, target.password) == ("app", "s3cr@t")
    assert target.jdbc_url == "jdbc:postgresql://db.example:6432/shop?sslmode=require"
    assert parse_url("jdbc:postgresql://h/d").port == 5432


def test_password_never_in_repr_or_redacted_url() -> None:
    spec = versioned()
    assert "s3cr" not in repr(spec) and "***" in repr(spec)
    assert "s3cr" not in spec.target().redacted()
    assert "s3cr" not in repr(spec.target())
    query_password = parse_url("postgresql://h/d?user=u&password=pw&sslmode=disable")
    assert query_password.password == "pw" and "pw" not in query_password.jdbc_url


@pytest.mark.parametrize("url", ["mysql://h/d", "postgresql:///d", "postgresql://h/"])
def test_malformed_urls_are_refused_with_the_expected_shape(url: str) -> None:
    with pytest.raises(OnceflowError, match="postgresql://"):
        parse_url(url)


def test_append_statement_binds_every_column_and_casts_json() -> None:
    spec = PostgresSinkSpec(
        url=URL, table="audit.orders", columns=(PgColumn("id", "STRING"), PgColumn("doc", "JSONB"))
    )
    assert insert_sql(spec) == (
        'INSERT INTO "audit"."orders" AS cur ("id", "doc") VALUES (?, CAST(? AS jsonb))'
    )
    assert "PRIMARY KEY" not in create_table_sql(spec)


def test_versioned_statement_never_steps_back() -> None:
    sql = insert_sql(versioned())
    assert 'ON CONFLICT ("key") DO UPDATE SET "version" = EXCLUDED."version"' in sql
    assert '"deleted" = EXCLUDED."deleted", "payload" = EXCLUDED."payload"' in sql
    assert sql.endswith('WHERE cur."version" < EXCLUDED."version"')
    ddl = create_table_sql(versioned())
    assert ddl.endswith('"payload" jsonb, PRIMARY KEY ("key"))'), ddl
    assert '"version" bigint NOT NULL' in ddl


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_retries": 3}, "max_retries=3 with exactly-once.*set it to 0"),
        ({"key": ()}, "needs the key columns"),
        ({"key": ("id",)}, "key columns \\['id'\\] are not among"),
        ({"version_column": "payload"}, "must be a non-null BIGINT or INT"),
        ({"mode": "merge"}, "mode 'merge'"),
        ({"guarantee": "none"}, "guarantee 'none'"),
        ({"table": "a.b.c"}, "schema.name"),
        ({"table": "drop table"}, "not a plain identifier"),
        ({"parallelism": 0}, "parallelism must be >= 1"),
    ],
)
def test_spec_refusals_say_what_to_change(changes: dict[str, object], message: str) -> None:
    with pytest.raises(OnceflowError, match=message):
        versioned(**changes)


def test_at_least_once_may_retry() -> None:
    versioned(guarantee="at-least-once", max_retries=3)


def test_refuses_a_server_without_prepared_transactions() -> None:
    with pytest.raises(OnceflowError, match="max_prepared_transactions = 0.*restart forever"):
        check(versioned(), dataclasses.replace(FACTS, max_prepared_transactions=0))
    # at-least-once needs no prepared transactions
    check(
        versioned(guarantee="at-least-once"),
        dataclasses.replace(FACTS, max_prepared_transactions=0),
    )


def test_refuses_parallelism_above_prepared_slots_and_connection_headroom() -> None:
    with pytest.raises(OnceflowError, match="allows 4 prepared.*needs up to 6"):
        check(versioned(), dataclasses.replace(FACTS, max_prepared_transactions=4), parallelism=3)
    # 100 - 3 reserved - 7 in use = 90 free; XA needs 2 per subtask (writer, committer)
    check(versioned(), parallelism=45)
    with pytest.raises(OnceflowError, match="needs up to 92 connections.*90 free"):
        check(versioned(), parallelism=46)


def test_refuses_exactly_once_without_checkpoints() -> None:
    with pytest.raises(OnceflowError, match="checkpointing is off"):
        validate_postgres_sink(versioned(), FACTS, parallelism=1, checkpoint_interval_ms=0)


def test_missing_table_is_refused_unless_created() -> None:
    missing = dataclasses.replace(FACTS, columns=None, primary_key=())
    with pytest.raises(OnceflowError, match="does not exist.*CREATE TABLE IF NOT EXISTS"):
        check(versioned(), missing)
    check(versioned(create_table=True), missing)


def test_wrong_table_shape_lists_every_problem() -> None:
    wrong = dataclasses.replace(
        FACTS, columns={"key": "text", "version": "integer", "payload": "text"}, primary_key=()
    )
    with pytest.raises(OnceflowError) as refusal:
        check(versioned(), wrong)
    text = str(refusal.value)
    assert "column version is integer, the sink writes bigint" in text
    assert "column deleted is missing" in text
    assert "column payload is text, the sink writes jsonb" in text
    assert "the primary key is none" in text


def test_pending_prepared_transactions_do_not_refuse_a_start() -> None:
    # A restored writer commits or rolls back its own leftovers, at any parallelism.
    check(versioned(), dataclasses.replace(FACTS, prepared_transactions=2))
    check(versioned(), dataclasses.replace(FACTS, prepared_transactions=2), parallelism=2)


def test_xid_prefix_is_stable_per_database_table_and_uid() -> None:
    spec = versioned()
    assert spec.stable_xid_prefix == f"{spec.target().database}/{spec.table}/{spec.uid}"
    assert versioned(xid_prefix="orders-v1").stable_xid_prefix == "orders-v1"

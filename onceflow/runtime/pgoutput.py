"""A job's optional PostgreSQL table output: flags, config and wiring.

A job that offers a table output adds :func:`add_postgres_arguments` to its
parser, keeps the parsed :class:`PostgresOutput` (``--pg-url`` and friends) in
its config, and calls :func:`write_query_to_postgres` with the rows to write:
a SQL ``SELECT`` over the job's routed stream, run in the JVM (no extra Python
operator), whose columns are the table's columns in order. The sink is
:mod:`onceflow.sinks.postgres`'s, with the job's ``--guarantee``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from onceflow.errors import OnceflowError
from onceflow.runtime.java import jdbc_jars
from onceflow.sinks.postgres import (
    PgColumn,
    PostgresSinkSpec,
    attach_postgres_sink,
    parse_url,
    read_server_facts,
    validate_postgres_sink,
)

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, DataStreamSink, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

__all__ = [
    "AT_LEAST_ONCE_FLUSH_MS",
    "PostgresOutput",
    "add_postgres_arguments",
    "check_postgres_output",
    "pop_postgres_output",
    "write_query_to_postgres",
]

log = logging.getLogger(__name__)

AT_LEAST_ONCE_FLUSH_MS: Final = 200
"""At-least-once table outputs flush at least this often (rows visible before the
checkpoint; that is what a replay then duplicates)."""

_KEYS: Final = ("pg_url", "pg_table", "pg_create_table", "pg_parallelism")


@dataclass(frozen=True, repr=False)
class PostgresOutput:
    """Where a job writes its table, from ``--pg-*`` flags or YAML ``pg_*`` keys.

    :param url: ``postgresql://user:password@host:port/database``.
    :param table: ``name`` or ``schema.name``.
    :param create_table: create the table when it is missing.
    :param parallelism: the sink's own parallelism (None: the job's).
    """

    url: str
    table: str
    create_table: bool = False
    parallelism: int | None = None

    def __post_init__(self) -> None:
        parse_url(self.url)  # raises on a malformed URL, without the password

    def __repr__(self) -> str:
        return (
            f"PostgresOutput(url={parse_url(self.url).redacted()!r}, table={self.table!r}, "
            f"create_table={self.create_table}, parallelism={self.parallelism})"
        )

    def spec(
        self,
        *,
        columns: Sequence[PgColumn],
        mode: str,
        guarantee: str,
        uid: str,
        key: Sequence[str] = (),
    ) -> PostgresSinkSpec:
        exactly_once = guarantee == "exactly-once"
        return PostgresSinkSpec(
            url=self.url,
            table=self.table,
            columns=tuple(columns),
            mode=mode,
            key=tuple(key),
            guarantee=guarantee,
            # A retried batch outside XA is harmless for at-least-once.
            max_retries=0 if exactly_once else 3,
            batch_interval_ms=0 if exactly_once else AT_LEAST_ONCE_FLUSH_MS,
            create_table=self.create_table,
            parallelism=self.parallelism,
            uid=uid,
        )


def add_postgres_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--pg-*`` flags; ``what`` says what the table holds (for ``--help``)."""
    g = parser.add_argument_group("PostgreSQL table output (optional)")
    g.add_argument("--pg-url", help="postgresql://user:password@host:port/database")
    g.add_argument("--pg-table", help=f"table of {what} (name or schema.name)")
    g.add_argument(
        "--pg-create-table", action="store_true", default=None, help="create it when missing"
    )
    g.add_argument("--pg-parallelism", type=int, help="the table sink's own parallelism")


def pop_postgres_output(options: MutableMapping[str, Any]) -> PostgresOutput | None:
    """Take the ``pg_*`` settings out of merged options; None when no table is asked for.

    :raises OnceflowError: a table without a URL or a URL without a table.
    """
    values = {key: options.pop(key) for key in _KEYS if key in options}
    url, table = values.get("pg_url"), values.get("pg_table")
    if not url and not table:
        return None
    if not url or not table:
        raise OnceflowError("a PostgreSQL output needs both --pg-url and --pg-table")
    return PostgresOutput(
        url=str(url),
        table=str(table),
        create_table=bool(values.get("pg_create_table") or False),
        parallelism=values.get("pg_parallelism"),
    )


def check_postgres_output(
    spec: PostgresSinkSpec | None, *, parallelism: int, checkpoint_interval_ms: int
) -> None:
    """Refuse a table output before the JVM starts (a job's ``check`` step); creates
    the table when asked. Attaching the sink checks again (the server may change).

    :raises OnceflowError: a refusal of :func:`onceflow.sinks.postgres.validate_postgres_sink`.
    """
    if spec is None:
        return
    validate_postgres_sink(
        spec,
        read_server_facts(spec),
        parallelism=spec.parallelism or parallelism,
        checkpoint_interval_ms=checkpoint_interval_ms,
    )


def write_query_to_postgres(
    env: StreamExecutionEnvironment,
    tenv: StreamTableEnvironment,
    routed: DataStream,
    query: str,
    spec: PostgresSinkSpec,
    *,
    checkpoint_interval_ms: int,
) -> DataStreamSink:
    """Write the rows of ``query`` over ``routed`` into the table of ``spec``.

    :param query: a SELECT over ``{routed}`` (the stream as a view) whose columns
        are the spec's columns in order, e.g.
        ``SELECT CAST(k AS STRING), CAST(v AS STRING) FROM {routed} WHERE route = 'out'``.
    :raises OnceflowError: a refusal of the sink's checks (see :mod:`onceflow.sinks.postgres`).
    """
    from pyflink.common import Types

    view = f"pg_rows_{spec.uid.replace('-', '_')}"
    tenv.create_temporary_view(view, tenv.from_data_stream(routed))
    table = tenv.sql_query(query.format(routed=f"`{view}`"))
    row_type = Types.ROW_NAMED(
        [c.name for c in spec.columns], [_type_info(c) for c in spec.columns]
    )
    # to_append_stream yields Java Rows with a RowTypeInfo, what the glue binds.
    rows = tenv.to_append_stream(table, row_type)
    env.add_jars(*jdbc_jars())
    return attach_postgres_sink(env, rows, spec, checkpoint_interval_ms=checkpoint_interval_ms)


def _type_info(column: PgColumn) -> Any:
    from pyflink.common import Types

    return {
        "STRING": Types.STRING(),
        "JSONB": Types.STRING(),
        "BIGINT": Types.LONG(),
        "INT": Types.INT(),
        "BOOLEAN": Types.BOOLEAN(),
        "DOUBLE": Types.DOUBLE(),
    }[column.type]

"""Validated factories over an exactly-once (XA) sink for PostgreSQL.

PyFlink has no wrapper for a JDBC sink of the 4.x connector (its
``pyflink.datastream.connectors.jdbc.JdbcSink`` targets a removed class), and
flink-connector-jdbc 4.0.0-2.0's XA sink is not exactly-once on PostgreSQL (see
below). The Java side is ``java/jdbc-glue`` (``make jars``): ``ExactlyOnceRowSink``,
a small Sink V2 writer and committer on Flink's own two-phase-commit framework that
speak XA to PostgreSQL, a statement builder binding a ``Row``'s fields by position,
and static factories (the at-least-once sink stays the connector's
``JdbcSink.buildAtLeastOnce``). This module builds them from a small,
typed :class:`PostgresSinkSpec`, checks the server and the table before the job
starts, and attaches the sink to a stream of ``Row`` s.

Modes:

- ``append``: ``INSERT INTO t (cols) VALUES (...)``: each record becomes one row
  (a ledger, an order log). The table needs no key.
- ``versioned``: one row per entity key holding its newest version::

      INSERT INTO t AS cur (cols) VALUES (...)
      ON CONFLICT (key) DO UPDATE SET col = EXCLUDED.col, ...
      WHERE cur.version < EXCLUDED.version

  A replayed or late event with an older (or equal) version changes nothing, so
  a row never steps back. Deletes are written as tombstone rows (the job sets a
  ``deleted`` column and clears the payload) under the same guard: a late upsert
  cannot resurrect a deleted key. The key must be the table's primary key.

Delivery guarantee:

- ``exactly-once``: the rows a subtask writes between two checkpoints go into
  one XA transaction on the subtask's own connection, ended and prepared
  (``PREPARE TRANSACTION``) when the checkpoint barrier passes; its Xid is the
  committable Flink keeps in the checkpoint, and the committer commits it
  (``COMMIT PREPARED``) once the checkpoint completes. After a failure the job
  restores the last completed checkpoint: the committer commits its committables
  again (one the server no longer knows was committed before: done), and each
  writer rolls back this sink's prepared transactions that the restored checkpoint
  can never commit (the rule below), then the records are replayed. Readers see
  each record's row once, after its checkpoint completes. No retries inside a
  transaction (a retried batch could be applied twice): ``max_retries`` must be 0.
- ``at-least-once``: the connector's JDBC sink: batches are committed when full,
  after ``batch_interval_ms`` and at every checkpoint; a replay writes again what
  was committed since the last completed checkpoint. Duplicates in ``append``
  mode; harmless in ``versioned`` mode (the version guard ignores them). For
  comparisons and the negative control of tests.

Xids and leftovers: every Xid starts with a hash of the sink's stable prefix
(``xid_prefix``: the database, table and uid by default; never the job id, which
changes on a resume) and carries the subtask index and a label, the id of the
last checkpoint the writer had snapshotted when it opened the transaction plus
one. A writer restored from checkpoint ``R`` (0 on a fresh start) rolls back the
sink's prepared transactions labelled above ``R`` whose subtask index modulo the
new parallelism is its own. Such a transaction was prepared at a barrier after
``R``, so no checkpoint that ``R`` restores can commit it; one labelled ``R`` or
below was prepared at ``R``'s barrier or before, is one of ``R``'s committables
(or committed already) and is left to the committer. The rule holds whatever the
old and new parallelism, so rescaling needs no special run: stop with a savepoint
at parallelism 2, resume at 1, and the one subtask commits both old subtasks'
committables and rolls back both old subtasks' leftovers. Two sinks must not share
an ``xid_prefix`` (one would roll back the other's transactions).

Locks: a prepared transaction keeps its row locks until its checkpoint's commit,
and the committer runs in the writer's task. In ``versioned`` mode a writer
therefore holds its rows back (in memory, and in its checkpoint state when the
next barrier comes first) while its previous transaction is still prepared,
instead of blocking on those locks (checked against the server at most every
100 ms). Each key should reach one subtask (the versioned job feeds the sink from
its keyed operator at the same parallelism).

What flink-connector-jdbc 4.0.0-2.0's XA sink (``JdbcSink.buildExactlyOnce``)
does on PostgreSQL, read in its source and seen in the statement log: its
writer's ``snapshotState`` commits the transaction ``prepareCommit`` has just
prepared (``commitTxUntil`` of the current checkpoint), before the checkpoint
completes, so a crash then replays rows already visible; its committer commits
``getTransaction().orElse(own)``, and the transaction reference does not survive
the committable's serialisation; leftovers are never rolled back (``end(TMFAIL)``
is answered ``XAER_PROTO``, and the discover-and-rollback step only matches the
connector's own Xid class while the driver's ``recover()`` returns its own), so
they keep their row locks; and a writer restored with more than one state fails
("more than one state to recover"), so it cannot downscale. It is kept in the glue
(``PostgresSinks.connectorExactlyOnce``, selected by the test-only environment
variable ``ONCEFLOW_PG_XA_SINK=connector``) only so the crash tests can show that.

Refused at start (:func:`validate_postgres_sink` over :class:`ServerFacts` read by
:func:`read_server_facts`), each saying what to change: exactly-once without
checkpointing or with retries; a server with ``max_prepared_transactions = 0``
(every prepare would fail and the job restart forever) or fewer prepared slots
or free connections than the sink's parallelism needs; a missing table (unless
``create_table``), missing columns or columns of another type; in ``versioned``
mode a primary key other than the key columns or a non-integer version column;
an unreachable URL. The password never appears in ``repr``, logs or messages.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, DataStreamSink, StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import Sink

__all__ = [
    "COLUMN_TYPES",
    "GUARANTEES",
    "MODES",
    "PgColumn",
    "PgTarget",
    "PostgresSinkSpec",
    "ServerFacts",
    "attach_postgres_sink",
    "connections_needed",
    "create_table_sql",
    "insert_sql",
    "parse_url",
    "postgres_sink",
    "read_server_facts",
    "validate_postgres_sink",
]

log = logging.getLogger(__name__)

MODES: Final = ("append", "versioned")
GUARANTEES: Final = ("exactly-once", "at-least-once")

#: Column type -> (PostgreSQL type, JDBC type name bound by the glue, accepted
#: ``information_schema.columns.data_type`` values).
COLUMN_TYPES: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "STRING": ("text", "VARCHAR", ("text", "character varying", "character")),
    "BIGINT": ("bigint", "BIGINT", ("bigint",)),
    "INT": ("integer", "INTEGER", ("integer",)),
    "BOOLEAN": ("boolean", "BOOLEAN", ("boolean",)),
    "DOUBLE": ("double precision", "DOUBLE", ("double precision",)),
    # Bound as text and cast in the statement: the driver has no JSON type.
    "JSONB": ("jsonb", "VARCHAR", ("jsonb",)),
}
_VERSION_TYPES: Final = ("BIGINT", "INT")
_XA_SINK_VARIABLE: Final = "ONCEFLOW_PG_XA_SINK"
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Connections per subtask: the writer's (its transactions, one after the other) and
# the committer's.
_XA_CONNECTIONS_PER_SUBTASK: Final = 2
# Prepared transactions per subtask at most: the one waiting for its checkpoint,
# plus one more when the next checkpoint prepares before the previous commits.
_PREPARED_PER_SUBTASK: Final = 2


def _ident(name: str) -> str:
    return f'"{name}"'


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise OnceflowError(
            f"{what} {name!r} is not a plain identifier (letters, digits, '_', not starting "
            "with a digit, at most 63 characters); rename it"
        )


@dataclass(frozen=True)
class PgTarget:
    """Where the sink writes, parsed from a ``postgresql://`` URL.

    :param params: extra connection parameters (e.g. ``sslmode``), passed to both
        psycopg and the JDBC driver.
    """

    host: str
    port: int
    database: str
    user: str | None
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    @property
    def jdbc_url(self) -> str:
        """``jdbc:postgresql://host:port/db[?params]`` without user or password."""
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"jdbc:postgresql://{self.host}:{self.port}/{quote(self.database)}{query}"

    @property
    def libpq_url(self) -> str:
        """The URL psycopg connects with (password included: never log it)."""
        auth = ""
        if self.user:
            auth = quote(self.user, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"postgresql://{auth}{self.host}:{self.port}/{quote(self.database)}{query}"

    def redacted(self) -> str:
        """The URL for logs: the password replaced by ``***``."""
        auth = f"{self.user}{':***' if self.password else ''}@" if self.user else ""
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"postgresql://{auth}{self.host}:{self.port}/{self.database}{query}"


_SECRET_PARAMS: Final = frozenset({"password", "sslpassword"})


def parse_url(url: str) -> PgTarget:
    """Parse ``postgresql://[user[:password]@]host[:port]/database[?param=value...]``.

    :raises OnceflowError: another scheme, no host or no database; the message never
        contains the password.
    """
    if url.startswith("jdbc:"):
        url = url[len("jdbc:") :]
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise OnceflowError(
            f"PostgreSQL URL scheme {parts.scheme!r} is not postgresql://; write it as "
            "postgresql://user:password@host:5432/database"
        )
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database:
        raise OnceflowError(
            "the PostgreSQL URL needs a host and a database: "
            "postgresql://user:password@host:5432/database"
        )
    params = parse_qsl(parts.query)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    for key, value in params:
        if key == "user" and user is None:
            user = value
        elif key == "password" and password is None:
            password = value
    kept = tuple((k, v) for k, v in params if k != "user" and k not in _SECRET_PARAMS)
    return PgTarget(parts.hostname, parts.port or 5432, database, user, password, kept)


@dataclass(frozen=True)
class PgColumn:
    """One column the sink writes; the stream's ``Row`` has the columns' fields in order.

    :param name: a plain identifier (written quoted, so case is kept).
    :param type: one of :data:`COLUMN_TYPES` (case-insensitive).
    :param nullable: whether the column may hold NULL (used when creating the table).
    """

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self) -> None:
        _check_name("column name", self.name)
        kind = str(self.type).upper()
        if kind not in COLUMN_TYPES:
            raise OnceflowError(
                f"column {self.name!r} has type {self.type!r}; use one of {', '.join(COLUMN_TYPES)}"
            )
        object.__setattr__(self, "type", kind)

    @property
    def sql_type(self) -> str:
        return COLUMN_TYPES[self.type][0]

    @property
    def jdbc_type(self) -> str:
        return COLUMN_TYPES[self.type][1]

    @property
    def placeholder(self) -> str:
        return "CAST(? AS jsonb)" if self.type == "JSONB" else "?"


@dataclass(frozen=True, repr=False)
class PostgresSinkSpec:
    """One PostgreSQL table output of a job.

    :param url: ``postgresql://user:password@host:port/database`` (the password may
        also come from ``password``).
    :param table: the table, ``name`` or ``schema.name``.
    :param columns: the columns written, in the order of the stream's ``Row`` fields.
    :param mode: ``append`` or ``versioned`` (see the module docstring).
    :param key: ``versioned``: the key columns (the table's primary key).
    :param version_column: ``versioned``: the BIGINT/INT column compared by the guard.
    :param guarantee: ``exactly-once`` (XA, default) or ``at-least-once``.
    :param max_retries: batch retries; must be 0 with exactly-once.
    :param batch_size: rows per JDBC batch.
    :param batch_interval_ms: ``at-least-once``: flush at least this often (0: only
        when full and at checkpoints).
    :param create_table: create a missing table (``CREATE TABLE IF NOT EXISTS``).
    :param parallelism: the sink operator's parallelism (None: the job's default).
    :param xid_prefix: stable and unique per sink: its Xids start with its hash, and
        a writer rolls back only leftovers with it (None: database, table and uid).
    :param xa_timeout_s: XA transaction timeout (0: the server's default).
    :param password: overrides the URL's password.
    :param uid: the sink operator's uid and name (savepoint compatibility).
    """

    url: str
    table: str
    columns: tuple[PgColumn, ...]
    mode: str = "append"
    key: tuple[str, ...] = ()
    version_column: str = "version"
    guarantee: str = "exactly-once"
    max_retries: int = 0
    batch_size: int = 1000
    batch_interval_ms: int = 0
    create_table: bool = False
    parallelism: int | None = None
    xid_prefix: str | None = None
    xa_timeout_s: int = 0
    password: str | None = None
    uid: str = "postgres-sink"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "key", tuple(self.key))
        target = self.target()  # raises on a malformed URL
        del target
        for part in self.table.split("."):
            _check_name("table name part", part)
        if self.table.count(".") > 1:
            raise OnceflowError(f"table {self.table!r}: write it as name or schema.name")
        if not self.columns:
            raise OnceflowError("a PostgreSQL sink needs at least one column")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise OnceflowError(f"columns {names} repeat a name; each column once")
        if self.mode not in MODES:
            raise OnceflowError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.guarantee not in GUARANTEES:
            raise OnceflowError(
                f"guarantee {self.guarantee!r} is not one of {', '.join(GUARANTEES)}"
            )
        if self.mode == "versioned":
            self._check_versioned(names)
        if self.guarantee == "exactly-once" and self.max_retries != 0:
            raise OnceflowError(
                f"max_retries={self.max_retries} with exactly-once: a retried batch inside an "
                "XA transaction could be applied twice (FLINK-22311); set it to 0"
            )
        if self.max_retries < 0 or self.batch_size < 1 or self.batch_interval_ms < 0:
            raise OnceflowError(
                "max_retries and batch_interval_ms must be >= 0 and batch_size >= 1"
            )
        if self.parallelism is not None and self.parallelism < 1:
            raise OnceflowError(f"sink parallelism must be >= 1, got {self.parallelism}")
        if self.xa_timeout_s < 0:
            raise OnceflowError("xa_timeout_s must be >= 0 (0 = the server's default)")
        if not self.uid:
            raise OnceflowError("the sink needs a uid (savepoint compatibility)")

    def _check_versioned(self, names: list[str]) -> None:
        if not self.key:
            raise OnceflowError("versioned mode needs the key columns (the primary key)")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise OnceflowError(f"key columns {missing} are not among the columns {names}")
        by_name = {c.name: c for c in self.columns}
        version = by_name.get(self.version_column)
        if version is None:
            raise OnceflowError(
                f"version column {self.version_column!r} is not among the columns {names}"
            )
        if version.type not in _VERSION_TYPES or version.nullable:
            raise OnceflowError(
                f"version column {self.version_column!r} must be a non-null BIGINT or INT "
                "(the guard compares it); declare it so"
            )
        if self.version_column in self.key:
            raise OnceflowError("the version column cannot be part of the key")
        if any(by_name[k].nullable for k in self.key):
            raise OnceflowError(f"key columns {list(self.key)} must be declared non-null")

    def target(self) -> PgTarget:
        target = parse_url(self.url)
        if self.password is not None:
            return PgTarget(
                target.host,
                target.port,
                target.database,
                target.user,
                self.password,
                target.params,
            )
        return target

    @property
    def stable_xid_prefix(self) -> str:
        """The Xid prefix: ``xid_prefix``, else ``database/table/uid``."""
        if self.xid_prefix:
            return self.xid_prefix
        return f"{self.target().database}/{self.table}/{self.uid}"

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]

    @property
    def qualified_table(self) -> str:
        return ".".join(_ident(p) for p in self.table.split("."))

    def __repr__(self) -> str:
        return (
            f"PostgresSinkSpec(url={self.target().redacted()!r}, table={self.table!r}, "
            f"mode={self.mode!r}, key={self.key!r}, columns={[c.name for c in self.columns]}, "
            f"guarantee={self.guarantee!r}, parallelism={self.parallelism})"
        )


# Pure SQL builders -------------------------------------------------------------------


def insert_sql(spec: PostgresSinkSpec) -> str:
    """The JDBC statement, one ``?`` per column in order (see the module docstring)."""
    cols = ", ".join(_ident(c.name) for c in spec.columns)
    values = ", ".join(c.placeholder for c in spec.columns)
    sql = f"INSERT INTO {spec.qualified_table} AS cur ({cols}) VALUES ({values})"
    if spec.mode == "append":
        return sql
    updated = [c.name for c in spec.columns if c.name not in spec.key]
    sets = ", ".join(f"{_ident(n)} = EXCLUDED.{_ident(n)}" for n in updated)
    key = ", ".join(_ident(k) for k in spec.key)
    version = _ident(spec.version_column)
    # Never step back: an older or equal version (a replay, a late event) changes nothing.
    return (
        f"{sql} ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE cur.{version} < EXCLUDED.{version}"
    )


def create_table_sql(spec: PostgresSinkSpec) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the columns (and the key as primary key)."""
    defs = [
        f"{_ident(c.name)} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns
    ]
    if spec.mode == "versioned":
        defs.append(f"PRIMARY KEY ({', '.join(_ident(k) for k in spec.key)})")
    return f"CREATE TABLE IF NOT EXISTS {spec.qualified_table} ({', '.join(defs)})"


# What the server says, and the checks over it ----------------------------------------


@dataclass(frozen=True)
class ServerFacts:
    """What :func:`read_server_facts` read from the server.

    :param columns: the table's columns -> ``information_schema`` data type, or None
        when the table does not exist.
    :param primary_key: the table's primary key columns (empty: none).
    :param connections_in_use: sessions open when the facts were read.
    :param prepared_transactions: rows of ``pg_prepared_xacts`` in the database.
    """

    server_version: str
    max_prepared_transactions: int
    max_connections: int
    reserved_connections: int
    connections_in_use: int
    prepared_transactions: int
    columns: Mapping[str, str] | None
    primary_key: tuple[str, ...]


def connections_needed(spec: PostgresSinkSpec, parallelism: int) -> int:
    """Connections the sink holds at most with ``parallelism`` subtasks."""
    per_subtask = _XA_CONNECTIONS_PER_SUBTASK if spec.guarantee == "exactly-once" else 1
    return per_subtask * parallelism


def validate_postgres_sink(
    spec: PostgresSinkSpec,
    facts: ServerFacts,
    *,
    parallelism: int,
    checkpoint_interval_ms: int,
) -> None:
    """Refuse a sink that could not keep its guarantee (see the module docstring).

    :param parallelism: the sink's parallelism (its own or the job's default).
    :raises OnceflowError: the first problem found, saying what to change.
    """
    exactly_once = spec.guarantee == "exactly-once"
    where = spec.target().redacted()
    if exactly_once and checkpoint_interval_ms <= 0:
        raise OnceflowError(
            "the exactly-once PostgreSQL sink commits when a checkpoint completes, and "
            "checkpointing is off: nothing would ever be committed; set a checkpoint interval"
        )
    if exactly_once:
        _check_prepared_slots(spec, facts, parallelism, where)
    _check_connections(spec, facts, parallelism, where)
    if facts.columns is None:
        if not spec.create_table:
            raise OnceflowError(
                f"table {spec.table} does not exist in {where}; create it "
                f"({create_table_sql(spec)}) or let the job create it (create_table / "
                "--pg-create-table)"
            )
    else:
        _check_table_shape(spec, facts.columns, facts.primary_key)


def _check_prepared_slots(
    spec: PostgresSinkSpec, facts: ServerFacts, parallelism: int, where: str
) -> None:
    if facts.max_prepared_transactions == 0:
        raise OnceflowError(
            f"{where} has max_prepared_transactions = 0: every XA prepare would fail and "
            "the job would restart forever; set max_prepared_transactions (e.g. to "
            "max_connections) in postgresql.conf and restart the server, or use "
            "at-least-once"
        )
    wanted = _PREPARED_PER_SUBTASK * parallelism
    if facts.max_prepared_transactions < wanted:
        raise OnceflowError(
            f"{where} allows {facts.max_prepared_transactions} prepared transactions, "
            f"the sink at parallelism {parallelism} needs up to {wanted}; raise "
            "max_prepared_transactions or lower the sink's parallelism"
        )


def _check_connections(
    spec: PostgresSinkSpec, facts: ServerFacts, parallelism: int, where: str
) -> None:
    free = facts.max_connections - facts.reserved_connections - facts.connections_in_use
    wanted = connections_needed(spec, parallelism)
    if wanted > free:
        raise OnceflowError(
            f"the sink at parallelism {parallelism} needs up to {wanted} connections "
            f"({'2 per subtask with XA' if spec.guarantee == 'exactly-once' else '1 per subtask'}"
            f"), {where} has {free} free (max_connections {facts.max_connections}, "
            f"{facts.reserved_connections} reserved, {facts.connections_in_use} in use); "
            "raise max_connections or lower the sink's parallelism"
        )


def _check_table_shape(
    spec: PostgresSinkSpec, columns: Mapping[str, str], primary_key: Sequence[str]
) -> None:
    problems: list[str] = []
    for column in spec.columns:
        found = columns.get(column.name)
        if found is None:
            problems.append(f"column {column.name} is missing")
        elif found not in COLUMN_TYPES[column.type][2]:
            problems.append(f"column {column.name} is {found}, the sink writes {column.sql_type}")
    if spec.mode == "versioned" and tuple(sorted(primary_key)) != tuple(sorted(spec.key)):
        shown = f"({', '.join(primary_key)})" if primary_key else "none"
        problems.append(
            f"the primary key is {shown}, the versioned upsert needs ({', '.join(spec.key)}) "
            "for ON CONFLICT"
        )
    if problems:
        raise OnceflowError(
            f"table {spec.table} does not fit the sink: {'; '.join(problems)}; alter the "
            f"table or the sink's columns (expected: {create_table_sql(spec)})"
        )


# Thin adapters: the server (psycopg) and Flink (py4j) --------------------------------


def read_server_facts(spec: PostgresSinkSpec, timeout_s: float = 10.0) -> ServerFacts:
    """Read the settings, the table's shape and pending prepared transactions.

    With ``create_table`` a missing table is created first.

    :raises OnceflowError: the server cannot be reached (the URL is shown redacted).
    """
    import psycopg

    target = spec.target()
    try:
        conn = psycopg.connect(target.libpq_url, connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if target.password:
            reason = reason.replace(target.password, "***")
        raise OnceflowError(
            f"cannot connect to PostgreSQL at {target.redacted()}: {reason}; check the URL, "
            "that the server runs (onceflow stack up starts a local one) and the credentials"
        ) from None
    with conn:
        if spec.create_table:
            conn.execute(create_table_sql(spec))
            conn.commit()

        def setting(name: str) -> str:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            return str(row[0]) if row else ""

        in_use = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"
        ).fetchone()
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (spec.schema_name, spec.table_name),
        ).fetchall()
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indisprimary AND i.indrelid = to_regclass(%s)",
            (spec.qualified_table,),
        ).fetchall()
        return ServerFacts(
            server_version=setting("server_version"),
            max_prepared_transactions=int(setting("max_prepared_transactions")),
            max_connections=int(setting("max_connections")),
            reserved_connections=int(setting("superuser_reserved_connections")),
            connections_in_use=int(in_use[0]) if in_use else 0,
            prepared_transactions=int(prepared[0]) if prepared else 0,
            columns={str(name): str(kind) for name, kind in rows} if rows else None,
            primary_key=tuple(str(r[0]) for r in pk),
        )


def postgres_sink(spec: PostgresSinkSpec) -> Sink:
    """The Java sink for ``spec`` (its jars must be loaded: see attach)."""
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    factories = get_gateway().jvm.dev.onceflow.jdbc.PostgresSinks
    target = spec.target()
    types = ",".join(c.jdbc_type for c in spec.columns)
    sql = insert_sql(spec)
    # Multi-row INSERTs are several times faster; an upsert cannot use them: one
    # statement may not update the same row twice (two versions of a key in a batch).
    rewrite = spec.mode == "append"
    if spec.guarantee == "exactly-once" and os.environ.get(_XA_SINK_VARIABLE) == "connector":
        # Test hook: the connector's XA sink, to show the crash tests fail on it.
        log.warning("%s=connector: the connector's XA sink (not exactly-once)", _XA_SINK_VARIABLE)
        j_sink = factories.connectorExactlyOnce(
            target.jdbc_url, target.user, target.password, sql, types, spec.batch_size, rewrite
        )
    elif spec.guarantee == "exactly-once":
        j_sink = factories.exactlyOnce(
            target.jdbc_url,
            target.user,
            target.password,
            sql,
            types,
            spec.batch_size,
            rewrite,
            spec.stable_xid_prefix,
            # Upserts would wait on the previous transaction's row locks (see above).
            spec.mode == "versioned",
            spec.xa_timeout_s,
        )
    else:
        j_sink = factories.atLeastOnce(
            target.jdbc_url,
            target.user,
            target.password,
            sql,
            types,
            spec.batch_size,
            rewrite,
            spec.batch_interval_ms,
            spec.max_retries,
        )
    return Sink(j_sink)


def attach_postgres_sink(
    env: StreamExecutionEnvironment,
    rows: DataStream,
    spec: PostgresSinkSpec,
    *,
    checkpoint_interval_ms: int,
    facts: ServerFacts | None = None,
) -> DataStreamSink:
    """Check the server and the table, then write ``rows`` (``Row`` s with the spec's
    columns in order) into the table. The JDBC jars must be on the job's classpath
    (:func:`onceflow.runtime.java.jdbc_jars`, added with ``env.add_jars``).

    :param facts: what the server said (read now when None; tests pass their own).
    :raises OnceflowError: a refusal of :func:`validate_postgres_sink`.
    """
    if facts is None:
        facts = read_server_facts(spec)
    parallelism = spec.parallelism or env.get_parallelism()
    validate_postgres_sink(
        spec, facts, parallelism=parallelism, checkpoint_interval_ms=checkpoint_interval_ms
    )
    if facts.prepared_transactions and spec.guarantee == "exactly-once":
        log.warning(
            "%d prepared transactions are pending in %s; a recovering sink commits or rolls "
            "back the ones its checkpoint lists, any other keeps its row locks until "
            "resolved (SELECT gid, prepared FROM pg_prepared_xacts)",
            facts.prepared_transactions,
            spec.target().redacted(),
        )
    sink = rows.sink_to(postgres_sink(spec)).name(spec.uid).uid(spec.uid)
    if spec.parallelism is not None:
        sink = sink.set_parallelism(spec.parallelism)
    log.info(
        "PostgreSQL sink %s: %s into %s (%s, PostgreSQL %s, parallelism %d)",
        spec.uid,
        spec.mode,
        spec.table,
        spec.guarantee,
        facts.server_version,
        parallelism,
    )
    return sink

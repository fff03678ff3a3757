"""The shapes of the streams onceflow's operators and sinks exchange, and the
Table API plumbing they share: stable uids whatever the environment sets, and
keying a stream in the JVM.

Shapes (``Row`` streams with a ``RowTypeInfo``):

- *JSON records* (:func:`json_record_type`): ``Row(v BYTES, topic STRING,
  partition INT, offset BIGINT)``, a Kafka value as its raw bytes and where it
  came from (:func:`onceflow.runtime.kafka_source.read_kafka_json`). The
  operators parse ``v`` themselves, so any bytes a topic can hold reach them.
- *keyed JSON records* (:func:`keyed_json_record_type`): the same with the key
  an operator derived first: ``Row(key STRING, v, topic, partition, offset)``
  (what dedup passes on: the key is the identity, e.g. the id).
- *Kafka records* (:func:`kafka_record_type`): ``Row(key STRING, v BYTES)``,
  what operators emit for Kafka (dead letters, reports, entity values); either
  may be null (a null ``v`` is a tombstone).
- anything else is the user's own: Rows of their declared type (keyed in the
  JVM by a field) or Python objects (keyed in Python by a function).

Stable uids: a Table API translation names its operators from
``table.exec.uid.format``, whose default numbers them by a planner-wide counter,
so a uid would change whenever the job gains a query. :func:`stable_uids`
scopes one translation to a caller's uid instead (``<uid>-<type>-<transformation>``),
on a table environment of onceflow's own, whatever the user's environment sets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from onceflow.errors import OnceflowError

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, KeyedStream, OutputTag, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

__all__ = [
    "JSON_FIELDS",
    "checkpoint_interval_ms",
    "KAFKA_FIELDS",
    "KEYED_JSON_FIELDS",
    "field_names",
    "is_json_stream",
    "is_row_stream",
    "json_record_type",
    "kafka_record_type",
    "key_in_jvm",
    "number_repeated_uids",
    "sql_literal",
    "keyed_json_record_type",
    "side_output",
    "stable_uids",
    "table_env",
    "table_settings",
]

JSON_FIELDS: Final = ("v", "topic", "partition", "offset")
KEYED_JSON_FIELDS: Final = ("key", *JSON_FIELDS)
KAFKA_FIELDS: Final = ("key", "v")
# The JVM-computed key rides first in every record of a stream keyed by key_in_jvm.
FLINK_KEY_FIELD: Final = "onceflow_key"

_views = itertools.count()
# Flink's defaults of the two settings stable_uids scopes.
_UID_DEFAULTS: Final = {
    "table.exec.uid.generation": "PLAN_ONLY",
    "table.exec.uid.format": "<id>_<transformation>",
}


def _bytes() -> Any:
    from pyflink.common import Types

    return Types.PRIMITIVE_ARRAY(Types.BYTE())


def json_record_type() -> Any:
    """``Row(v BYTES, topic STRING, partition INT, offset BIGINT)``."""
    from pyflink.common import Types

    return Types.ROW_NAMED(list(JSON_FIELDS), [_bytes(), Types.STRING(), Types.INT(), Types.LONG()])


def keyed_json_record_type() -> Any:
    """``Row(key STRING, v BYTES, topic STRING, partition INT, offset BIGINT)``."""
    from pyflink.common import Types

    return Types.ROW_NAMED(
        list(KEYED_JSON_FIELDS),
        [Types.STRING(), _bytes(), Types.STRING(), Types.INT(), Types.LONG()],
    )


def kafka_record_type() -> Any:
    """``Row(key STRING, v BYTES)``: a Kafka record's key and value."""
    from pyflink.common import Types

    return Types.ROW_NAMED(list(KAFKA_FIELDS), [Types.STRING(), _bytes()])


def field_names(stream: DataStream) -> tuple[str, ...] | None:
    """The field names of a Row stream, or None for any other type."""
    from pyflink.common.typeinfo import RowTypeInfo

    kind = stream.get_type()
    return tuple(kind.get_field_names()) if isinstance(kind, RowTypeInfo) else None


def is_json_stream(stream: DataStream) -> bool:
    """Whether ``stream`` holds (keyed) JSON records with their source positions."""
    from pyflink.common.typeinfo import RowTypeInfo

    kind = stream.get_type()
    if not isinstance(kind, RowTypeInfo):
        return False
    if tuple(kind.get_field_names()) == JSON_FIELDS:
        return bool(kind == json_record_type())
    if tuple(kind.get_field_names()) == KEYED_JSON_FIELDS:
        return bool(kind == keyed_json_record_type())
    return False


def is_row_stream(stream: DataStream) -> bool:
    """Whether ``stream`` holds Rows of a declared type (a ``RowTypeInfo``)."""
    return field_names(stream) is not None


def checkpoint_interval_ms(env: StreamExecutionEnvironment) -> int:
    """The environment's checkpoint interval, 0 when checkpointing is off."""
    checkpoints = env.get_checkpoint_config()
    if not checkpoints.is_checkpointing_enabled():
        return 0
    return int(checkpoints.get_checkpoint_interval())


def table_env(env: StreamExecutionEnvironment) -> StreamTableEnvironment:
    """A table environment of onceflow's own over ``env`` (its statements join env's job)."""
    from pyflink.table import StreamTableEnvironment

    return StreamTableEnvironment.create(env)


@contextmanager
def stable_uids(tenv: StreamTableEnvironment, uid: str) -> Iterator[None]:
    """Name every operator ``tenv`` translates inside the block after ``uid``.

    ``table.exec.uid.generation=ALWAYS`` and ``table.exec.uid.format =
    <uid>-<type>-<transformation>`` for the block (the translation happens when a
    table becomes a DataStream or a statement set is attached), then the
    previous settings again.
    """
    if not uid or not all(c.isalnum() or c in "-_." for c in uid):
        raise OnceflowError(f"uid {uid!r}: use letters, digits, '-', '_' and '.'")
    config = tenv.get_config()
    # A translation copies the table config into the environment's configuration
    # (measured): restore both, or every later table environment on this
    # environment, the user's included, would inherit this uid's format.
    root = tenv._j_tenv.getConfig().getRootConfiguration()
    before = {key: config.get(key, default) for key, default in _UID_DEFAULTS.items()}
    root_before = {key: root.toMap().get(key) for key in _UID_DEFAULTS}
    config.set("table.exec.uid.generation", "ALWAYS")
    config.set("table.exec.uid.format", f"{uid}-<type>-<transformation>")
    try:
        yield
    finally:
        for key, value in before.items():
            config.set(key, value)
        for key, value in root_before.items():
            if value is None:
                root.removeKey(key)
            else:
                root.setString(key, value)


@contextmanager
def table_settings(tenv: StreamTableEnvironment, settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` on ``tenv`` for the translations inside the block, then the
    previous values again (also in the environment's configuration, which a
    translation copies them into: see :func:`stable_uids`)."""
    config = tenv.get_config()
    root = tenv._j_tenv.getConfig().getRootConfiguration()
    before = {key: config.get_configuration().to_dict().get(key) for key in settings}
    root_before = {key: root.toMap().get(key) for key in settings}
    for key, value in settings.items():
        config.set(key, value)
    try:
        yield
    finally:
        conf = config.get_configuration()
        for key, value in before.items():
            if value is None:
                conf.remove_config(key)
            else:
                config.set(key, value)
        for key, value in root_before.items():
            if value is None:
                root.removeKey(key)
            else:
                root.setString(key, value)


def key_in_jvm(
    stream: DataStream,
    key_sql: str,
    *,
    uid: str,
    fields: Sequence[str] | None = None,
    prepare: Callable[[StreamTableEnvironment], None] | None = None,
) -> KeyedStream:
    """``stream`` keyed by a SQL expression, computed and partitioned in the JVM.

    Records become ``Row(onceflow_key, *fields)``: the key (``key_sql``, a STRING
    expression over the stream's fields, which must never yield a lone surrogate:
    see :func:`onceflow.operators.records.sql_unicode_safe`) rides first, so the
    keyed Python operator after it checks its key contract without a call back
    into the JVM. PyFlink's ``key_by`` always runs its key selector in Python
    (an extra Python operator per record); this builds the keyed stream it would
    (rows ``(key, record)`` partitioned on field 0 by PyFlink's own
    ``KeyByKeySelector``) from a SQL projection instead.

    :param uid: prefix of the (stateless) conversion operators' uids.
    :param fields: the fields the records keep (default: all, in order).
    :param prepare: called with the table environment first (to register the
        functions ``key_sql`` calls).
    """
    from pyflink.common import Types
    from pyflink.common.typeinfo import RowTypeInfo
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    kind = stream.get_type()
    if not isinstance(kind, RowTypeInfo):
        raise OnceflowError(f"only a Row stream can be keyed in the JVM, got {kind}")
    all_types = dict(zip(kind.get_field_names(), kind.get_field_types(), strict=True))
    names = list(fields) if fields is not None else list(all_types)
    record = Types.ROW_NAMED(
        [FLINK_KEY_FIELD, *names], [Types.STRING(), *(all_types[name] for name in names)]
    )
    tenv = table_env(stream.get_execution_environment())
    if prepare is not None:
        prepare(tenv)
    view = f"onceflow_keyed_{next(_views)}"
    columns = ", ".join(f"`{name}`" for name in names)
    with stable_uids(tenv, uid):
        tenv.create_temporary_view(view, tenv.from_data_stream(stream))
        keyed_rows = tenv.sql_query(
            f"SELECT `{FLINK_KEY_FIELD}`, ROW(`{FLINK_KEY_FIELD}`, {columns}) AS `rec` "
            f"FROM (SELECT {key_sql} AS `{FLINK_KEY_FIELD}`, {columns} FROM `{view}`)"
        )
        # to_append_stream (not to_data_stream): the keyed Python operator needs a
        # RowTypeInfo, and to_data_stream yields an ExternalTypeInfo.
        pairs = tenv.to_append_stream(
            keyed_rows, Types.ROW_NAMED([FLINK_KEY_FIELD, "rec"], [Types.STRING(), record])
        )
    j_keyed = pairs._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, record, pairs)


def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """The rows ``stream``'s operator emitted to ``tag``, typed by the tag.

    PyFlink's ``get_side_output`` appends a Python identity map (one more Python
    call per side-output record); the Python operator already emits the tag's
    declared type to the JVM, so the Java side output is used as it is.

    The Python operator only accepts records for tags the job graph consumes
    (any other fails the task: "Unknown OutputTag id"), so every side output also
    feeds a discarding sink: an output the job never writes anywhere costs
    nothing and fails nothing. Writing it is the job's choice.
    """
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    j_side = stream._j_data_stream.getSideOutput(tag.get_java_output_tag())
    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    j_side.sinkTo(discard).name(f"{tag.tag_id} (unwritten)").uid(f"{tag.tag_id}-unwritten")
    return DataStream(j_side)


def require_fields(stream: DataStream, wanted: Sequence[str], what: str) -> tuple[str, ...]:
    """The stream's field names, refusing a stream that lacks one of ``wanted``."""
    names = field_names(stream)
    if names is None:
        raise OnceflowError(f"{what} needs a Row stream with fields {list(wanted)}")
    missing = [name for name in wanted if name not in names]
    if missing:
        raise OnceflowError(
            f"{what}: the stream has fields {list(names)}, not {missing}; "
            "name the fields when you declare the stream's Row type"
        )
    return names


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def number_repeated_uids(translated: DataStream, source: DataStream) -> None:
    """Tell apart the uids one translation repeats (two ``Calc`` nodes are both
    ``<uid>-stream-exec-calc-calc``): ``-2``, ``-3``... in the order the graph is
    walked from the output back to ``source``, the same for the same query.
    A uid repeated in a job graph fails its submission."""
    stop = source._j_data_stream.getTransformation().getId()
    seen: dict[str, int] = {}
    pending = [translated._j_data_stream.getTransformation()]
    visited: set[int] = set()
    while pending:
        node = pending.pop()
        if node.getId() in visited or node.getId() == stop:
            continue
        visited.add(node.getId())
        uid = node.getUid()
        if uid is not None:
            seen[uid] = seen.get(uid, 0) + 1
            if seen[uid] > 1:
                node.setUid(f"{uid}-{seen[uid]}")
        pending.extend(node.getInputs().toArray())

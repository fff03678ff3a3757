"""The JVM path of dedup: Flink's own keep-first deduplication over the raw bytes.

For JSON records, :func:`dedup_json_in_jvm` compiles the dedup to Flink SQL; the
state and the deduplication are Flink's:

1. the identity of each record: by an id field, onceflow's Java scanner
   (:data:`onceflow.udf.JSON_ID`: ``s:<id>``/``i:<id>``, exactly what the
   Python path keys by, or NULL whenever Python might not accept the record), no
   Python per accepted record; by a content fingerprint (canonical JSON cannot be
   said in SQL), one call per record of a Python SQL function running the Python
   path's own code (:class:`~onceflow.operators.dedup.flink.IdentityFunction`:
   ``f:<32 hex>``, or NULL for a dead letter), in a translation of its own so the
   queries below read its result instead of calling Python again;
2. records with a key go to Flink's deduplication (``ROW_NUMBER() OVER (PARTITION
   BY key ORDER BY proctime) = 1``, keep-first, its state TTL scoped to this
   query by ``table.exec.state.ttl``) and come out as the Python path's passed
   records: ``Row(key, v, topic, partition, offset)``, the original bytes unchanged;
3. records without a key (only those; by fingerprint split off in one pass by
   ``dev.onceflow.udf.SplitUnkeyed``, by id by a query of their own) cross into
   Python once, where the Python path's own code
   (:class:`~onceflow.operators.dedup.flink.UnkeyedDeadLetters`) names the reason
   and writes the dead letter: byte-identical by construction. A record Python
   would accept but the scanner refused is ``ambiguous_key``, on
   both paths (the Python path keys by the same scanner). A fingerprint's dead
   letters cross twice (the identity call, then this one): they are rare.

Delivery: the deduplication state (one entry per id) is checkpointed with the
source offsets, as on the Python path; the outputs still go through the
transactional sinks, so the job stays exactly-once.

Savepoints: the SQL operators' uids are ``<uid>-jvm-<type>-<transformation>``
(:func:`onceflow.streams.stable_uids`), the Python path's operator is ``<uid>``:
the state layouts differ, so a savepoint taken on one path does not restore into
the other. Flink refuses it (the savepoint's state of ``<uid>`` maps to no
operator); with ``--allow-non-restored-state`` it starts with an empty
dedup state, so ids seen before the switch pass once more.

Failure injection (tests, the verifier: :func:`onceflow.operators.faults.arm_faults`)
adds :data:`onceflow.udf.FAIL_ONCE` on the first occurrences, only when
armed.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

from onceflow.operators.dedup.identity import IdentitySpec
from onceflow.operators.faults import armed_faults
from onceflow.streams import (
    JSON_FIELDS,
    json_record_type,
    kafka_record_type,
    keyed_json_record_type,
    number_repeated_uids,
    sql_literal,
    stable_uids,
    table_env,
    table_settings,
)
from onceflow.udf import FAIL_ONCE, attach_udf_jar, java_function, output_tag, register_udfs

if TYPE_CHECKING:
    from pyflink.datastream import DataStream

__all__ = ["dedup_json_in_jvm"]

log = logging.getLogger(__name__)

_views = itertools.count()


def dedup_json_in_jvm(
    stream: DataStream,
    identity: IdentitySpec,
    *,
    max_record_bytes: int,
    ttl_ms: int | None,
    uid: str,
    dead_letter_max_bytes: int,
) -> tuple[DataStream, DataStream]:
    """JSON records deduplicated by Flink's own operators: ``(passed, dead_letters)``.

    :param stream: JSON records (:func:`onceflow.streams.json_record_type`, or keyed).
    :param identity: an id field (keyed by the Java scanner) or a fingerprint (keyed by
        one Python call per record).
    :param ttl_ms: the horizon in processing-time ms (state TTL); None: forever.
    :param uid: the prefix of every operator's uid: ``<uid>-jvm-...``.
    """
    from onceflow.operators.dedup.flink import UnkeyedDeadLetters, sql_key_expression

    env = stream.get_execution_environment()
    attach_udf_jar(env)
    tenv = table_env(env)
    register_udfs(tenv)
    view = f"onceflow_dedup_{next(_views)}"
    columns = ", ".join(f"`{name}`" for name in JSON_FIELDS)
    ttl = f"{ttl_ms or 0} ms"  # 0: no TTL
    upstream = stream
    rejected = None
    if identity.id_field is not None:
        key = sql_key_expression(identity.id_field, max_record_bytes, empty=False)
        tenv.create_temporary_view(view, _with_proctime(tenv, stream, JSON_FIELDS))
    else:
        key = "`k`"
        upstream = _identified_in_python(tenv, stream, identity, max_record_bytes, uid, view)
        upstream, rejected = _split_unkeyed(upstream, uid)
        tenv.create_temporary_view(view, _with_proctime(tenv, upstream, ("k", *JSON_FIELDS)))
    with stable_uids(tenv, f"{uid}-jvm"), table_settings(tenv, {"table.exec.state.ttl": ttl}):
        firsts = tenv.sql_query(
            f"SELECT SUBSTRING(`k` FROM 3) AS `key`, {columns} FROM ("
            f"SELECT `k`, {columns}, ROW_NUMBER() OVER (PARTITION BY `k` ORDER BY `pt`) AS `rn` "
            f"FROM (SELECT {key} AS `k`, {columns}, `pt` FROM `{view}`) WHERE `k` IS NOT NULL"
            f") WHERE `rn` = 1{_fault_condition(uid)}"
        )
        passed = tenv.to_append_stream(firsts, keyed_json_record_type())
    number_repeated_uids(passed, upstream)
    if rejected is None:  # by id: the scanner is SQL, its NULLs a query of their own
        with stable_uids(tenv, f"{uid}-jvm-unkeyed"):
            unkeyed = tenv.sql_query(f"SELECT {columns} FROM `{view}` WHERE {key} IS NULL")
            rejected = tenv.to_append_stream(unkeyed, json_record_type())
        number_repeated_uids(rejected, upstream)
    dead_letters = (
        rejected.flat_map(
            UnkeyedDeadLetters(identity, max_record_bytes, dead_letter_max_bytes),
            output_type=kafka_record_type(),
        )
        .name(f"{uid}-jvm-dead-letters")
        .uid(f"{uid}-jvm-dead-letters")
    )
    return passed, dead_letters


def _with_proctime(tenv: Any, stream: DataStream, names: tuple[str, ...]) -> Any:
    """The stream's fields ``names`` as a table, with a processing-time attribute ``pt``."""
    from pyflink.table import Schema
    from pyflink.table.expressions import col

    table = tenv.from_data_stream(
        stream, Schema.new_builder().column_by_expression("pt", "PROCTIME()").build()
    )
    return table.select(*(col(name) for name in (*names, "pt")))


def _identified_in_python(
    tenv: Any, stream: DataStream, identity: IdentitySpec, max_record_bytes: int, uid: str,
    view: str,
) -> DataStream:  # fmt: skip
    """``Row(k, v, topic, partition, offset)``: each record's identity from one call of
    :class:`~onceflow.operators.dedup.flink.IdentityFunction` (NULL: a dead letter).

    The identity is computed in its own translation and comes back as a stream, so the
    dedup and the dead-letter queries over it read ``k`` instead of calling Python
    again: two queries over the same Python call would cross twice per record."""
    from pyflink.common import Types
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from onceflow.operators.dedup.flink import IdentityFunction

    function = f"{view}_identity"
    tenv.create_temporary_function(
        function,
        udf(IdentityFunction(identity, max_record_bytes), result_type=DataTypes.STRING()),
    )
    raw = f"{view}_raw"
    tenv.create_temporary_view(raw, tenv.from_data_stream(stream))
    columns = ", ".join(f"`{name}`" for name in JSON_FIELDS)
    record = json_record_type()
    with stable_uids(tenv, f"{uid}-jvm-identity"):
        table = tenv.sql_query(f"SELECT {function}(`v`) AS `k`, {columns} FROM `{raw}`")
        identified = tenv.to_append_stream(
            table,
            Types.ROW_NAMED(["k", *JSON_FIELDS], [Types.STRING(), *record.get_field_types()]),
        )
    number_repeated_uids(identified, stream)
    return identified


def _split_unkeyed(identified: DataStream, uid: str) -> tuple[DataStream, DataStream]:
    """``(keyed, unkeyed)``: the identified records with an identity, and ``Row(v, topic,
    partition, offset)`` of those without, split in one pass by
    ``dev.onceflow.udf.SplitUnkeyed`` (a second query would convert every record again)."""
    from pyflink.datastream.data_stream import DataStream as PyDataStream

    tag = output_tag(f"{uid}-jvm-unkeyed", json_record_type())
    split = (
        identified._j_data_stream.process(
            java_function("SplitUnkeyed", tag), identified._j_data_stream.getType()
        )
        .uid(f"{uid}-jvm-split")
        .name(f"{uid}-jvm-split")
    )
    return PyDataStream(split), PyDataStream(split.getSideOutput(tag))


def _fault_condition(uid: str) -> str:
    """The failure injection's condition on first occurrences, when armed (a test hook)."""
    faults = armed_faults(uid)
    if not faults.points or faults.marker_dir is None:
        return ""
    armed = sql_literal("\n".join(sorted(faults.points)))
    return f" AND {FAIL_ONCE}(SUBSTRING(`k` FROM 3), {armed}, {sql_literal(faults.marker_dir)})"

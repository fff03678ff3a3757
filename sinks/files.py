"""Validated factory over Flink's exactly-once ``FileSink`` (Parquet or JSON lines).

PyFlink cannot write a two-phase-commit sink in Python; the 2PC machinery of
files (FileWriter -> FileSinkCommittable -> FileCommitter) is Java's ``FileSink``.
This module builds it from a small, typed :class:`FileSinkSpec` and refuses the
settings under which it could not keep its guarantee.

Formats:

- ``parquet``: ``FileSink.for_bulk_format`` with
  ``ParquetBulkWriters.for_row_type``; the columns come from a declared
  :class:`RecordSchema` (names and a few SQL types), which gives both the
  Parquet ``RowType`` and the ``RowTypeInfo`` the feeding stream must have.
- ``json-lines``: ``FileSink.for_row_format`` with
  ``Encoder.simple_string_encoder()`` over a ``STRING`` stream (one JSON
  document per element; the element's text is written followed by ``\\n``).

Both roll part files on every checkpoint (bulk formats accept nothing else;
row files use the same policy so that every format publishes at the same
moment): one part file per subtask and bucket per checkpoint that saw data.

Delivery guarantee (exactly-once, independent of the Kafka sinks' setting):

1. A subtask writes into an *in-progress* file, hidden by a dot prefix:
   ``.<prefix>-<uuid>-<n><suffix>.inprogress.<uuid>``.
2. At a checkpoint barrier the file is closed; it becomes *pending* (still the
   hidden in-progress name) and its committable is part of the checkpoint.
3. When the checkpoint completes, the committer renames it to its final name
   ``<prefix>-<uuid>-<n><suffix>``. Committed files therefore appear only after
   a checkpoint completes, atomically (a rename), and never hold data that a
   recovery replays: a file is never visible under a final name before that.
4. On failure, the job restores the last completed checkpoint: its pending
   files are committed (the rename is idempotent), files opened after it are
   abandoned (they keep their hidden in-progress names and are never renamed)
   and the replayed records are written again into new files.

Readers must ignore names starting with ``.`` or ``_``
(:func:`read_committed_parquet` does; so do Spark and Hive). Abandoned hidden
files are not deleted by Flink; remove old ones with a housekeeping job if
disk space matters.

Refused at start (:func:`validate_file_sink`, :func:`attach_file_sink`):
checkpointing off (files would stay in-progress forever and nothing would
ever be published); a part prefix or bucket name that readers would take for
a hidden file; a schema or format that does not match the stream. Paths
without a scheme (relative ones too) are normalised to absolute ``file://``
URIs; ``s3://``, ``hdfs://`` etc. are kept as given (Flink then needs the
matching filesystem plugin).

Bucketing: ``none`` (all files in the base path), ``datetime``
(``DateTimeBucketAssigner``: one folder per processing-time period, e.g.
``2026-01-31--13``) or ``field`` (one Hive-style folder per value of a
column, e.g. ``op=delete/``). PyFlink's ``BucketAssigner`` only wraps the two
Java assigners of the first two, and a Python ``BucketAssigner`` cannot run
inside the Java ``FileSink`` writer, so ``field`` buckets are written by the
Table API ``filesystem`` connector with ``PARTITIONED BY`` instead: the same
Java file writer and committer, the same commit-on-checkpoint protocol and
hidden in-progress names. Differences: the files are named
``part-<uuid>-<subtask>-<n>`` (the connector fixes the names: the part prefix
and suffix do not apply), the bucket column is stored in the folder name, not
in the files, and a null value goes to ``<field>=__HIVE_DEFAULT_PARTITION__``.
:func:`read_committed_parquet` reads the column back from the folder names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlparse

from onceflow.errors import OnceflowError
from onceflow.schema import COLUMN_TYPES, Column, RecordSchema

if TYPE_CHECKING:
    import pyarrow as pa
    from pyflink.datastream import DataStream, DataStreamSink, StreamExecutionEnvironment
    from pyflink.datastream.connectors.file_system import FileSink

__all__ = [
    "BUCKETINGS",
    "COLUMN_TYPES",
    "COMPRESSIONS",
    "FORMATS",
    "HIDDEN_PREFIXES",
    "Column",
    "FileSinkSpec",
    "RecordSchema",
    "attach_file_sink",
    "committed_files",
    "file_sink",
    "normalise_base_path",
    "read_committed_parquet",
    "validate_file_sink",
    "write_files",
]

log = logging.getLogger(__name__)

FORMATS: Final = ("parquet", "json-lines")
BUCKETINGS: Final = ("none", "datetime", "field")
COMPRESSIONS: Final = ("UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4_RAW")
HIDDEN_PREFIXES: Final = (".", "_")
"""Names readers skip: Flink's in-progress files start with ``.``, markers with ``_``."""

NULL_PARTITION: Final = "__HIVE_DEFAULT_PARTITION__"
"""Folder value of a null bucket field (pyarrow's Hive partitioning reads it as null)."""

# Filesystems Flink reaches through plugins; their URIs are passed on unchanged.
REMOTE_SCHEMES: Final = frozenset(
    {"s3", "s3a", "s3p", "hdfs", "gs", "abfs", "abfss", "wasb", "wasbs", "oss", "viewfs"}
)
_DEFAULT_SUFFIX: Final = {"parquet": ".parquet", "json-lines": ".jsonl"}


def normalise_base_path(path: str) -> str:
    """An absolute URI for ``path``: plain and relative paths become ``file://`` URIs.

    :raises OnceflowError: for an empty path, a ``file:`` URI naming another host,
        or a scheme Flink has no filesystem for.
    """
    if not isinstance(path, str) or not path.strip():
        raise OnceflowError("the file sink needs a base path (a directory or URI)")
    parsed = urlparse(path)
    # A one-letter "scheme" is a Windows drive letter, not a URI.
    if len(parsed.scheme) <= 1:
        return Path(path).expanduser().resolve().as_uri()
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise OnceflowError(
                f"{path!r} names host {parsed.netloc!r}; a file: URI is local "
                "(write file:///abs/path)"
            )
        return Path(unquote(parsed.path)).expanduser().resolve().as_uri()
    if scheme in REMOTE_SCHEMES:
        if not parsed.netloc and not parsed.path.strip("/"):
            raise OnceflowError(f"{path!r} has no bucket or path")
        return path.rstrip("/")
    raise OnceflowError(
        f"{path!r} uses scheme {scheme!r}, which Flink has no filesystem for; use a local "
        f"path, a file:// URI or one of {', '.join(sorted(REMOTE_SCHEMES))}"
    )


@dataclass(frozen=True)
class FileSinkSpec:
    """One file output of a job (validated at construction; see the module docstring).

    :param base_path: directory or URI; normalised by :func:`normalise_base_path`.
    :param format: ``parquet`` (needs ``schema``) or ``json-lines`` (a STRING stream).
    :param schema: the Parquet columns; must be None for ``json-lines``.
    :param bucketing: ``none``, ``datetime`` (processing-time folders) or
        ``field`` (a folder per value of ``bucket_field``; parquet only).
    :param bucket_field: the schema column of ``field`` buckets.
    :param bucket_format: Java ``DateTimeFormatter`` pattern of ``datetime`` folders.
    :param bucket_timezone: Java ``ZoneId`` of the ``datetime`` folders.
    :param part_prefix: first part of committed file names (not ``.``/``_``).
    :param part_suffix: file name suffix; default ``.parquet`` or ``.jsonl``.
    :param compression: Parquet codec, one of :data:`COMPRESSIONS` (default SNAPPY);
        must be None for ``json-lines`` (row files are written uncompressed).
    """

    base_path: str
    format: str = "parquet"
    schema: RecordSchema | None = None
    bucketing: str = "none"
    bucket_format: str = "yyyy-MM-dd--HH"
    bucket_timezone: str = "UTC"
    bucket_field: str | None = None
    part_prefix: str = "part"
    part_suffix: str | None = None
    compression: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_path", normalise_base_path(self.base_path))
        if self.format not in FORMATS:
            raise OnceflowError(f"file format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.format == "parquet" and self.schema is None:
            raise OnceflowError("a parquet file sink needs a RecordSchema for its columns")
        if self.format == "json-lines" and self.schema is not None:
            raise OnceflowError(
                "a json-lines file sink writes a STRING stream as is; drop the schema"
            )
        if self.bucketing not in BUCKETINGS:
            raise OnceflowError(
                f"bucketing {self.bucketing!r} is not one of {', '.join(BUCKETINGS)}"
            )
        if self.bucketing == "field":
            if self.format != "parquet" or self.schema is None:
                raise OnceflowError("field buckets are available for parquet files only")
            if self.bucket_field not in self.schema.names:
                raise OnceflowError(
                    f"bucket field {self.bucket_field!r} is not a column of the schema "
                    f"({', '.join(self.schema.names)})"
                )
            if len(self.schema.names) < 2:
                raise OnceflowError("field buckets need a column besides the bucket field")
        elif self.bucket_field is not None:
            raise OnceflowError(
                f"bucket field {self.bucket_field!r} is set but bucketing is "
                f"{self.bucketing!r}; use bucketing 'field'"
            )
        if self.bucketing == "datetime":
            first = self.bucket_format.lstrip("'")[:1]
            if not self.bucket_format or first in HIDDEN_PREFIXES:
                raise OnceflowError(
                    f"bucket format {self.bucket_format!r} would name folders starting with "
                    f"{first!r}, which readers skip as hidden; start it with a date field"
                )
            if not self.bucket_timezone:
                raise OnceflowError("datetime buckets need a time zone (e.g. UTC)")
        _check_file_name_part("part prefix", self.part_prefix, allow_empty=False)
        if self.part_prefix.startswith(HIDDEN_PREFIXES):
            raise OnceflowError(
                f"part prefix {self.part_prefix!r} starts with '.' or '_': committed files "
                "would look like in-progress files and readers would skip them"
            )
        if self.part_suffix is None:
            object.__setattr__(self, "part_suffix", _DEFAULT_SUFFIX[self.format])
        else:
            _check_file_name_part("part suffix", self.part_suffix, allow_empty=True)
        if self.format == "json-lines" and self.compression is not None:
            raise OnceflowError("json-lines files are written uncompressed; drop the compression")
        if self.format == "parquet":
            codec = (self.compression or "SNAPPY").upper()
            if codec not in COMPRESSIONS:
                raise OnceflowError(
                    f"parquet compression {self.compression!r} is not one of "
                    f"{', '.join(COMPRESSIONS)}"
                )
            object.__setattr__(self, "compression", codec)


def _check_file_name_part(what: str, value: str, *, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise OnceflowError(f"the {what} must be a non-empty string")
    if "/" in value or "\\" in value or "\x00" in value:
        raise OnceflowError(f"the {what} {value!r} may not contain '/', '\\' or NUL")


def validate_file_sink(spec: FileSinkSpec, *, checkpoint_interval_ms: int) -> None:
    """Refuse a file sink that could never publish.

    :param checkpoint_interval_ms: the job's checkpoint interval (<= 0: off).
    :raises OnceflowError: with what to change.
    """
    if checkpoint_interval_ms <= 0:
        raise OnceflowError(
            f"the file sink to {spec.base_path} needs checkpointing: part files are "
            "committed only when a checkpoint completes, so without it they stay hidden "
            "in-progress files forever; set a checkpoint interval (e.g. "
            "--checkpoint-interval-ms 2000)"
        )


def file_sink(spec: FileSinkSpec) -> FileSink:
    """Build the Java ``FileSink`` of ``spec`` (validated already by the spec)."""
    from pyflink.common import Configuration
    from pyflink.common.serialization import Encoder
    from pyflink.datastream.connectors.file_system import (
        BucketAssigner,
        FileSink,
        OutputFileConfig,
        RollingPolicy,
    )
    from pyflink.datastream.formats.parquet import ParquetBulkWriters

    names = (
        OutputFileConfig.builder()
        .with_part_prefix(spec.part_prefix)
        .with_part_suffix(spec.part_suffix)
        .build()
    )
    if spec.bucketing == "datetime":
        try:
            buckets = BucketAssigner.date_time_bucket_assigner(
                spec.bucket_format, spec.bucket_timezone
            )
        except Exception as exc:  # noqa: BLE001 - Py4J wraps Java's DateTimeException
            raise OnceflowError(
                f"datetime buckets {spec.bucket_format!r} in {spec.bucket_timezone!r} are "
                f"refused by Java: {exc}"
            ) from exc
    else:
        buckets = BucketAssigner.base_path_bucket_assigner()
    if spec.format == "parquet":
        assert spec.schema is not None and spec.compression is not None  # __post_init__
        hadoop = Configuration()
        # Read by Parquet's writer builder (ParquetOutputFormat.COMPRESSION).
        hadoop.set_string("parquet.compression", spec.compression)
        writer = ParquetBulkWriters.for_row_type(spec.schema.row_type(), hadoop_config=hadoop)
        bulk = FileSink.for_bulk_format(spec.base_path, writer)
        # Bulk writers cannot resume a half-written file: they may only roll on checkpoint.
        bulk.with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        return bulk.with_bucket_assigner(buckets).with_output_file_config(names).build()
    rows = FileSink.for_row_format(spec.base_path, Encoder.simple_string_encoder())
    # Same publication moment as Parquet: a file per checkpoint, nothing rolled in between.
    rows.with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
    built: FileSink = rows.with_bucket_assigner(buckets).with_output_file_config(names).build()
    return built


def write_files(
    stream: DataStream, spec: FileSinkSpec, *, uid: str, name: str | None = None
) -> DataStreamSink | None:
    """Write ``stream`` into the exactly-once file sink of ``spec`` (:func:`attach_file_sink`)."""
    return attach_file_sink(stream.get_execution_environment(), stream, spec, uid=uid, name=name)


def attach_file_sink(
    env: StreamExecutionEnvironment,
    stream: DataStream,
    spec: FileSinkSpec,
    *,
    uid: str,
    name: str | None = None,
) -> DataStreamSink | None:
    """Write ``stream`` into the file sink of ``spec`` with a stable uid and name.

    The uid names the sink's writer (its state: in-progress and pending files)
    and, suffixed by Flink, its committer; keep it stable across deployments.

    :param env: the job's environment; its checkpointing must be on.
    :param stream: a stream of ``spec.schema.type_info()`` rows (parquet) or of
        ``Types.STRING()`` (json-lines).
    :raises OnceflowError: if checkpointing is off or the stream's type does not
        match the spec.
    """
    from onceflow.streams import checkpoint_interval_ms

    # The environment's checkpointing is the truth: without it nothing would ever publish.
    validate_file_sink(spec, checkpoint_interval_ms=checkpoint_interval_ms(env))
    _require_stream_type(stream, spec)
    # The uid and name go on the sink transformation (writer, and committer by Flink).
    if spec.bucketing == "field":
        _attach_partitioned_table_sink(env, stream, spec, uid)
        log.info(
            "file sink %s: %s, a folder per value of %s, parts part-*", uid, spec.format,
            spec.bucket_field,
        )  # fmt: skip
        return None
    attached = stream.sink_to(file_sink(spec)).uid(uid).name(name or uid)
    log.info(
        "file sink %s: %s, buckets %s, parts %s*%s",
        uid,
        spec.format,
        spec.bucketing,
        spec.part_prefix,
        spec.part_suffix,
    )
    return attached


def _require_stream_type(stream: DataStream, spec: FileSinkSpec) -> None:
    """Refuse a stream that does not carry what the writer expects (rows map to
    columns by position)."""
    from pyflink.common import Types
    from pyflink.common.typeinfo import RowTypeInfo

    actual = stream.get_type()
    if spec.format == "parquet":
        assert spec.schema is not None
        # RowTypeInfo equality ignores field names: compare both.
        if (
            not isinstance(actual, RowTypeInfo)
            or actual.get_field_names() != spec.schema.names
            or actual != spec.schema.type_info()
        ):
            raise OnceflowError(
                f"the stream into {spec.base_path} has type {actual}, but the parquet schema "
                f"has columns {spec.schema.names} typed {spec.schema.type_info()}; declare the "
                "stream with spec.schema.type_info()"
            )
    elif actual != Types.STRING():
        raise OnceflowError(
            f"a json-lines file sink needs a STRING stream, got {actual}; map the elements "
            "to JSON text first"
        )


def _attach_partitioned_table_sink(
    env: StreamExecutionEnvironment, stream: DataStream, spec: FileSinkSpec, uid: str
) -> None:
    """``field`` buckets: the Table API filesystem connector, ``PARTITIONED BY`` the field.

    Same Java file writer and commit-on-checkpoint committer as ``FileSink``; the
    statement is attached to ``env`` like the job's other sinks.
    """
    from pyflink.table import FormatDescriptor, Schema, TableDescriptor

    from onceflow.streams import stable_uids, table_env

    assert spec.schema is not None and spec.bucket_field is not None  # __post_init__
    if spec.part_prefix != "part" or spec.part_suffix != _DEFAULT_SUFFIX["parquet"]:
        log.warning(
            "file sink %s: field buckets are written by the filesystem connector, which names "
            "files part-<uuid>-<subtask>-<n>; part prefix %r and suffix %r do not apply",
            uid,
            spec.part_prefix,
            spec.part_suffix,
        )
    tenv = table_env(env)
    table_name = re.sub(r"[^A-Za-z0-9_]", "_", f"files_{uid}")
    descriptor = (
        TableDescriptor.for_connector("filesystem")
        .schema(Schema.new_builder().from_row_data_type(spec.schema.row_type()).build())
        .partitioned_by(spec.bucket_field)
        .option("path", spec.base_path)
        .option("partition.default-name", NULL_PARTITION)
        .format(
            FormatDescriptor.for_format("parquet")
            .option("compression", str(spec.compression))
            .build()
        )
        .build()
    )
    with stable_uids(tenv, uid):
        tenv.create_temporary_table(table_name, descriptor)
        statements = tenv.create_statement_set()
        statements.add_insert(table_name, tenv.from_data_stream(stream))
        statements.attach_as_datastream()


def _local_or_uri(path: str | Path) -> str:
    text = str(path)
    parsed = urlparse(text)
    if parsed.scheme.lower() == "file":
        return unquote(parsed.path)
    return text


def committed_files(path: str | Path) -> list[str]:
    """The committed part files under ``path`` (recursively), sorted.

    Hidden names (``.`` or ``_`` first, in any folder level) are in-progress,
    pending or abandoned files and markers: never committed data.
    """
    import pyarrow.dataset as ds

    dataset = ds.dataset(
        _local_or_uri(path), format="parquet", ignore_prefixes=list(HIDDEN_PREFIXES)
    )
    return sorted(dataset.files)


def read_committed_parquet(
    path: str | Path, schema: RecordSchema | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read only the committed Parquet part files under ``path`` as one table.

    ``pyarrow.dataset`` discovery skips names starting with ``.`` or ``_`` by
    default (``selector_ignore_prefixes``; checked against pyarrow 16.1); the
    prefixes are passed explicitly anyway, because this function's whole
    point is that in-progress files are never read as data.

    :param path: the sink's base path (a local path, a ``file://`` URI or any
        URI pyarrow can open).
    :param schema: the declared schema: gives an empty table of the right
        columns when nothing is committed yet, checks the files against it, and
        types a ``field`` bucket's column read back from its folder names.
    :param columns: read only these columns.
    :returns: every committed row (file order is not meaningful).
    """
    import pyarrow.dataset as ds

    arrow = schema.arrow_schema() if schema is not None else None
    dataset = ds.dataset(
        _local_or_uri(path),
        format="parquet",
        schema=arrow,
        # Field buckets keep their column in Hive-style folder names (field=value);
        # folders of other shapes (datetime buckets) are not partitions and are ignored.
        partitioning=ds.partitioning(arrow, flavor="hive") if arrow is not None else "hive",
        ignore_prefixes=list(HIDDEN_PREFIXES),
    )
    return dataset.to_table(columns=list(columns) if columns is not None else None)

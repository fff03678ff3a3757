"""Unit tests for sinks.files: spec validation, path normalisation, committed-file reads."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onceflow.errors import OnceflowError
from onceflow.sinks.files import (
    NULL_PARTITION,
    Column,
    FileSinkSpec,
    RecordSchema,
    committed_files,
    normalise_base_path,
    read_committed_parquet,
    validate_file_sink,
)

pytestmark = pytest.mark.unit

SCHEMA = RecordSchema.of(("key", "STRING", False), ("version", "bigint"), ("data", "BYTES"))


# --- RecordSchema -----------------------------------------------------------------------------


def test_schema_normalises_types_and_keeps_order() -> None:
    assert SCHEMA.names == ["key", "version", "data"]
    assert [c.type for c in SCHEMA.columns] == ["STRING", "BIGINT", "BYTES"]
    arrow = SCHEMA.arrow_schema()
    assert arrow.names == SCHEMA.names
    assert arrow.field("key").nullable is False and arrow.field("version").type == pa.int64()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ((), "at least one column"),
        ((Column("a", "STRING"), Column("a", "INT")), "repeats column names: a"),
    ],
)
def test_schema_refuses_empty_or_repeated(columns: tuple[Column, ...], message: str) -> None:
    with pytest.raises(OnceflowError, match=message):
        RecordSchema(columns)


@pytest.mark.parametrize("name", ["", "1a", "a-b", "a b", "a.b"])
def test_column_refuses_non_identifiers(name: str) -> None:
    with pytest.raises(OnceflowError, match="not an identifier"):
        Column(name, "STRING")


def test_column_refuses_unknown_types() -> None:
    with pytest.raises(OnceflowError, match="use one of STRING, BIGINT"):
        Column("t", "TIMESTAMP")


# --- paths --------------------------------------------------------------------------------------


def test_plain_and_relative_paths_become_absolute_file_uris(tmp_path: Path) -> None:
    assert normalise_base_path(str(tmp_path / "out")) == (tmp_path / "out").as_uri()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert normalise_base_path("rel/dir/") == (tmp_path / "rel" / "dir").as_uri()
        assert normalise_base_path("file:rel") == (tmp_path / "rel").as_uri()
    finally:
        os.chdir(cwd)
    assert normalise_base_path(f"file://{tmp_path}/a/../b") == (tmp_path / "b").as_uri()
    assert normalise_base_path(f"file://localhost{tmp_path}") == tmp_path.as_uri()


def test_remote_uris_are_kept_and_unknown_schemes_refused() -> None:
    assert normalise_base_path("s3://bucket/changes/") == "s3://bucket/changes"
    assert normalise_base_path("hdfs://nn:8020/x") == "hdfs://nn:8020/x"
    with pytest.raises(OnceflowError, match="no filesystem for"):
        normalise_base_path("ftp://host/x")
    with pytest.raises(OnceflowError, match="names host"):
        normalise_base_path("file://otherhost/x")
    with pytest.raises(OnceflowError, match="needs a base path"):
        normalise_base_path("  ")


# --- FileSinkSpec -------------------------------------------------------------------------------


def test_defaults_per_format(tmp_path: Path) -> None:
    parquet = FileSinkSpec(str(tmp_path), schema=SCHEMA)
    assert parquet.part_suffix == ".parquet" and parquet.compression == "SNAPPY"
    assert parquet.base_path.startswith("file:///")
    lines = FileSinkSpec(str(tmp_path), format="json-lines")
    assert lines.part_suffix == ".jsonl" and lines.compression is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "csv", "schema": SCHEMA}, "not one of parquet, json-lines"),
        ({}, "needs a RecordSchema"),
        ({"format": "json-lines", "schema": SCHEMA}, "drop the schema"),
        ({"format": "json-lines", "compression": "GZIP"}, "written uncompressed"),
        ({"schema": SCHEMA, "compression": "brotli"}, "compression 'brotli'"),
        ({"schema": SCHEMA, "bucketing": "field:key"}, "not one of none, datetime, field"),
        ({"schema": SCHEMA, "bucketing": "field", "bucket_field": "nope"}, "not a column"),
        ({"schema": SCHEMA, "bucketing": "field"}, "not a column"),
        ({"schema": SCHEMA, "bucket_field": "key"}, "use bucketing 'field'"),
        ({"format": "json-lines", "bucketing": "field", "bucket_field": "k"}, "parquet files only"),
        ({"schema": SCHEMA, "bucketing": "datetime", "bucket_format": "'_'yyyy"}, "hidden"),
        ({"schema": SCHEMA, "bucketing": "datetime", "bucket_timezone": ""}, "time zone"),
        ({"schema": SCHEMA, "part_prefix": ".part"}, "look like in-progress"),
        ({"schema": SCHEMA, "part_prefix": "_part"}, "look like in-progress"),
        ({"schema": SCHEMA, "part_prefix": ""}, "non-empty"),
        ({"schema": SCHEMA, "part_prefix": "a/b"}, "may not contain"),
        ({"schema": SCHEMA, "part_suffix": "x/y"}, "may not contain"),
    ],
)
def test_spec_refuses(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OnceflowError, match=message):
        FileSinkSpec(str(tmp_path), **kwargs)  # type: ignore[arg-type]


def test_checkpointing_off_is_refused(tmp_path: Path) -> None:
    spec = FileSinkSpec(str(tmp_path), schema=SCHEMA)
    validate_file_sink(spec, checkpoint_interval_ms=1000)
    for interval in (0, -1):
        with pytest.raises(OnceflowError, match="in-progress files forever"):
            validate_file_sink(spec, checkpoint_interval_ms=interval)


# --- reading committed files --------------------------------------------------------------------


def _write(path: Path, keys: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"key": keys, "version": list(range(len(keys))), "data": [b"x"] * len(keys)},
        schema=SCHEMA.arrow_schema(),
    )
    pq.write_table(table, path)


def test_read_committed_parquet_skips_hidden_files_at_every_level(tmp_path: Path) -> None:
    _write(tmp_path / "2026-01-01--10" / "changes-abc-0.parquet", ["a", "b"])
    _write(tmp_path / "2026-01-01--11" / "changes-abc-1.parquet", ["c"])
    # What Flink leaves while writing or after a failover: valid Parquet under hidden names.
    _write(tmp_path / "2026-01-01--11" / ".changes-abc-2.parquet.inprogress.0a1b", ["x", "y"])
    _write(tmp_path / ".hidden-bucket" / "changes-abc-3.parquet", ["z"])
    _write(tmp_path / "_temporary" / "changes-abc-4.parquet", ["z"])
    (tmp_path / "2026-01-01--11" / "_SUCCESS").write_text("")
    files = committed_files(tmp_path)
    assert [Path(f).name for f in files] == ["changes-abc-0.parquet", "changes-abc-1.parquet"]
    table = read_committed_parquet(tmp_path.as_uri(), SCHEMA)
    assert sorted(table.column("key").to_pylist()) == ["a", "b", "c"]


def test_read_committed_parquet_of_an_empty_sink_has_the_declared_columns(tmp_path: Path) -> None:
    (tmp_path / ".changes-abc-0.parquet.inprogress.0a1b").write_bytes(b"not parquet yet")
    table = read_committed_parquet(tmp_path, SCHEMA)
    assert table.num_rows == 0 and table.schema.names == SCHEMA.names


def test_field_buckets_are_read_back_from_hive_folder_names(tmp_path: Path) -> None:
    """The filesystem connector keeps the bucket column in ``key=value`` folders only."""
    without_key = pa.schema([f for f in SCHEMA.arrow_schema() if f.name != "key"])

    def write(folder: str, name: str, versions: list[int]) -> None:
        path = tmp_path / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = {"version": versions, "data": [b"x"] * len(versions)}
        pq.write_table(pa.table(rows, schema=without_key), path)

    write("key=a", "part-1-0-0", [1, 2])
    write("key=b", "part-1-0-1", [3])
    write(f"key={NULL_PARTITION}", "part-1-0-2", [4])
    write("key=a", ".part-1-0-3.inprogress.77", [99])  # abandoned: never read
    table = read_committed_parquet(tmp_path, SCHEMA)
    rows = zip(table.column("key").to_pylist(), table.column("version").to_pylist(), strict=True)
    assert sorted(rows, key=str) == sorted([("a", 1), ("a", 2), ("b", 3), (None, 4)], key=str)

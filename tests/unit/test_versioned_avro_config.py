"""The versioned upsert job's ``--format avro`` settings and its change-event schema check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onceflow.errors import OnceflowError
from onceflow.jobs.versioned_upsert import check_change_schema, parse_config

REQUIRED = ["--input-topic", "in", "--applied-topic", "applied", "--stale-topic", "stale"]
REQUIRED += ["--conflict-topic", "conflict", "--dlq-topic", "dlq", "--changes-path", "/tmp/c"]
REGISTRY = "http://user:s3cret@127.0.0.1:8085/apis/ccompat/v7"


def _schema(*fields: tuple[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Change",
        "fields": [{"name": name, "type": kind} for name, kind in fields],
    }


GOOD = _schema(("key", "string"), ("version", "long"), ("op", ["null", "string"]), ("x", "int"))


def test_a_change_schema_needs_key_and_version_of_the_right_types() -> None:
    check_change_schema(GOOD)
    check_change_schema(_schema(("key", "string"), ("version", "int")))  # op optional
    with pytest.raises(OnceflowError, match="has no field 'version'"):
        check_change_schema(_schema(("key", "string"), ("x", "long")))
    with pytest.raises(OnceflowError, match="has no field 'key'"):
        check_change_schema(_schema(("id", "string"), ("version", "long")))
    with pytest.raises(OnceflowError, match="version must be long or int"):
        check_change_schema(_schema(("key", "string"), ("version", "string")))
    with pytest.raises(OnceflowError, match="op must be string"):
        check_change_schema(_schema(("key", "string"), ("version", "long"), ("op", "int")))


def test_avro_flags_need_avro_a_registry_and_a_change_schema(tmp_path: Path) -> None:
    assert parse_config(REQUIRED).value_format == "json"
    with pytest.raises(OnceflowError, match="need --format avro"):
        parse_config([*REQUIRED, "--registry-url", REGISTRY])
    with pytest.raises(OnceflowError, match="needs --registry-url"):
        parse_config([*REQUIRED, "--format", "avro"])
    avro = [*REQUIRED, "--format", "avro", "--registry-url", REGISTRY]
    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(_schema(("key", "string"), ("x", "long"))))
    with pytest.raises(OnceflowError, match="has no field 'version'"):
        parse_config([*avro, "--reader-schema", str(bad)])
    good = tmp_path / "good.avsc"
    good.write_text(json.dumps(GOOD))
    cfg = parse_config([*avro, "--reader-schema", str(good), "--subject-strategy", "record"])
    assert json.loads(cfg.reader_schema or "") == GOOD and cfg.subject_strategy == "record"
    assert "s3cret" not in repr(cfg)


def test_the_path_flag_is_auto_by_default_and_jvm_refuses_avro() -> None:
    assert parse_config(REQUIRED).versioned_path == "auto"
    assert parse_config([*REQUIRED, "--versioned-path", "python"]).versioned_path == "python"
    avro = [*REQUIRED, "--format", "avro", "--registry-url", REGISTRY]
    with pytest.raises(OnceflowError, match="--versioned-path jvm needs JSON change events"):
        parse_config([*avro, "--versioned-path", "jvm"])
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        parse_config([*REQUIRED, "--versioned-path", "java"])

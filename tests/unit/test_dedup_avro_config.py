"""The dedup job's ``--format avro`` settings: what it needs and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onceflow.errors import OnceflowError
from onceflow.jobs.dedup import parse_config

REQUIRED = ["--input-topic", "in", "--output-topic", "out", "--dlq-topic", "dlq"]
REGISTRY = "http://127.0.0.1:8085/apis/ccompat/v7"


def test_json_is_the_default_and_takes_no_registry() -> None:
    assert parse_config(REQUIRED).value_format == "json"
    with pytest.raises(OnceflowError, match="need --format avro"):
        parse_config([*REQUIRED, "--registry-url", REGISTRY])


def test_avro_needs_a_registry_and_a_top_level_id_field() -> None:
    with pytest.raises(OnceflowError, match="needs --registry-url"):
        parse_config([*REQUIRED, "--format", "avro"])
    with pytest.raises(OnceflowError, match="top-level field"):
        parse_config(
            [*REQUIRED, "--format", "avro", "--registry-url", REGISTRY, "--id-field", "a.b"]
        )
    with pytest.raises(OnceflowError, match="--fingerprint is JSON only"):
        parse_config([*REQUIRED, "--format", "avro", "--registry-url", REGISTRY, "--fingerprint"])


def test_reader_schema_file_is_read_and_registry_credentials_are_redacted(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]}
    path = tmp_path / "reader.avsc"
    path.write_text(json.dumps(schema))
    url = "https://user:s3cret@registry.example:8081/apis/ccompat/v7"
    argv = [*REQUIRED, "--format", "avro", "--registry-url", url, "--reader-schema", str(path)]
    cfg = parse_config(argv)
    assert json.loads(cfg.reader_schema or "") == schema
    assert "s3cret" not in repr(cfg) and "user:***@registry.example:8081" in repr(cfg)
    with pytest.raises(OnceflowError, match="cannot read it"):
        parse_config([*argv[:-1], str(tmp_path / "missing.avsc")])

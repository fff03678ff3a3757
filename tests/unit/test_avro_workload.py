"""The Avro workload, ``onceflow check``'s Avro decoding and the local registry's settings,
without a registry: the registry is a dict."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest

from onceflow.avro.wire import OVERSIZE, AvroDecoder, Decoded, DecodeFailure
from onceflow.errors import OnceflowError
from onceflow.local.registry import LocalRegistry, RegistrySettings, default_registry_port
from onceflow.testing.avro_workload import (
    AVRO_MALFORMED_REASONS,
    UNKNOWN_SCHEMA_ID_BASE,
    avro_items,
    workload_schema,
)
from onceflow.testing.check import avro_id_of, check_output
from onceflow.testing.drain import ConsumedRecord
from onceflow.testing.workload import Expectation, WorkloadSpec, generate

SCHEMA_ID = 3
SPEC = WorkloadSpec(3_000, 0.3, 0.05, seed=5, oversize_bytes=5_000, oversize_every=10)


def decoder(id_field: str = "id") -> AvroDecoder:
    schemas = {SCHEMA_ID: ("AVRO", json.dumps(workload_schema(id_field)))}
    return AvroDecoder(schemas.get, workload_schema(id_field))


def test_same_records_kinds_and_ids_as_the_json_workload() -> None:
    avro = list(avro_items(SPEC, SCHEMA_ID))
    plain = list(generate(SPEC))
    assert [(a.kind, a.ident) for a in avro] == [(j.kind, j.ident) for j in plain]
    dec = decoder()
    for a, j in zip(avro, plain, strict=True):
        if a.kind != "malformed":
            got = dec.decode(a.value)
            assert isinstance(got, Decoded) and got.record == json.loads(j.value)


def test_deterministic_and_duplicates_are_byte_identical() -> None:
    first = [i.value for i in avro_items(SPEC, SCHEMA_ID)]
    assert first == [i.value for i in avro_items(SPEC, SCHEMA_ID)]
    assert first != [i.value for i in avro_items(SPEC, SCHEMA_ID + 1)]
    by_id: dict[str, bytes] = {}
    for item in avro_items(SPEC, SCHEMA_ID):
        if item.kind == "unique":
            assert item.ident is not None and item.ident not in by_id
            by_id[item.ident] = item.value
        elif item.kind == "duplicate":
            assert item.ident is not None and by_id[item.ident] == item.value


def test_every_malformed_record_decodes_to_its_reason() -> None:
    dec = AvroDecoder(decoder()._lookup, workload_schema(), max_bytes=4_000)
    reasons: Counter[str] = Counter()
    values = []
    for item in avro_items(SPEC, SCHEMA_ID):
        if item.kind != "malformed":
            continue
        got = dec.decode(item.value)
        assert isinstance(got, DecodeFailure), item
        assert got.reason == item.malformed_reason, (item.value[:40], got)
        reasons[got.reason] += 1
        values.append(item.value)
    assert set(reasons) == {*AVRO_MALFORMED_REASONS, OVERSIZE}
    assert sum(reasons.values()) == SPEC.malformed
    assert reasons[OVERSIZE] == SPEC.oversize
    assert len(set(values)) == len(values)  # distinct: the DLQ check matches by content


def test_unknown_schema_records_use_ids_a_registry_has_not_reached() -> None:
    ids = {
        int.from_bytes(i.value[1:5], "big")
        for i in avro_items(SPEC, SCHEMA_ID)
        if i.malformed_reason == "unknown_schema"
    }
    assert ids and min(ids) >= UNKNOWN_SCHEMA_ID_BASE and max(ids) < 2**31


def test_id_field_must_be_a_top_level_avro_name() -> None:
    schema = workload_schema("msg_id")
    assert schema["fields"][0] == {"name": "msg_id", "type": "string"}
    item = next(avro_items(WorkloadSpec(1, 0, 0, seed=1, id_field="msg_id"), SCHEMA_ID))
    got = decoder("msg_id").decode(item.value)
    assert isinstance(got, Decoded) and got.record["msg_id"] == item.ident
    for bad in ("meta.msg_id", "1id", "seq", "pay-load"):
        with pytest.raises(ValueError, match="cannot be a field"):
            workload_schema(bad)


def test_expectation_keeps_its_value_format(tmp_path: Path) -> None:
    exp = Expectation.collect(avro_items(SPEC, SCHEMA_ID), SPEC)
    exp.value_format = "avro"
    back = Expectation.load(exp.save(tmp_path / "e.json.gz"))
    assert back == exp and back.value_format == "avro"
    legacy = exp.to_dict()
    del legacy["value_format"]  # expectations saved before Avro existed
    assert Expectation.from_dict(legacy).value_format == "json"


def _records(values: list[bytes | None]) -> list[ConsumedRecord]:
    return [ConsumedRecord("t", 0, i, 0, None, v) for i, v in enumerate(values)]


def test_check_reads_avro_output_by_schema_id() -> None:
    items = list(avro_items(SPEC, SCHEMA_ID))
    exp = Expectation.collect(items, SPEC)
    firsts = [i.value for i in items if i.kind == "unique"]
    id_of = avro_id_of(decoder())
    assert check_output(exp.unique_ids, _records(list(firsts)), id_of=id_of).ok

    # The raw input: every duplicate and malformed record shows.
    report = check_output(exp.unique_ids, _records([i.value for i in items]), id_of=id_of)
    assert report.duplicated == exp.duplicates
    assert report.unexpected == SPEC.oversize  # well-formed, an id nobody expects
    assert report.invalid == exp.malformed - SPEC.oversize
    assert any("bad_magic" in e or "not_framed" in e for e in report.invalid_examples)

    # JSON bytes read as Avro are not records.
    as_json = check_output(exp.unique_ids, _records([next(generate(SPEC)).value]), id_of=id_of)
    assert as_json.invalid == 1 and "bad_magic" in as_json.invalid_examples[0]


def test_registry_settings_keep_to_loopback_and_off_9000(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ONCEFLOW_REGISTRY_PORT", "18085")
    assert default_registry_port() == 18085
    registry = LocalRegistry(RegistrySettings(port=18085))
    assert registry.url == "http://127.0.0.1:18085/apis/ccompat/v7"
    cmd = registry.command("java", Path("/x/app-runner.jar"))
    assert "-Dquarkus.http.host=127.0.0.1" in cmd and "-Dquarkus.http.port=18085" in cmd
    assert "-Dquarkus.management.port=18086" in cmd and not any("9000" in c for c in cmd)
    assert (
        f"-Dapicurio.datasource.url=jdbc:h2:file:{tmp_path}/run/registry-18085/data/registry"
        ";WRITE_DELAY=0" in cmd  # each registration on disk when the API answers
    )
    assert cmd[-2:] == ["-jar", "/x/app-runner.jar"]
    with pytest.raises(OnceflowError, match="not a TCP port"):
        RegistrySettings(port=70_000)


def test_registry_refuses_a_port_in_use_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEFLOW_HOME", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OnceflowError) as err:
            LocalRegistry(RegistrySettings(port=port)).up(timeout=5)
    message = str(err.value)
    assert "\n" not in message and f"port {port} is already in use" in message
    assert "ONCEFLOW_REGISTRY_PORT" in message

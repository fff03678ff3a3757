"""The local stack's schema registry (Apicurio) through its Confluent-compatible API."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from onceflow.avro.registry import RegistryError, SchemaRegistry
from onceflow.local.processes import port_open
from onceflow.local.registry import LocalRegistry, RegistrySettings
from onceflow.testing.harness import free_port

pytestmark = pytest.mark.it


def _schema(name: str, *extra: dict[str, object]) -> dict[str, object]:
    fields = [{"name": "id", "type": "string"}, *extra]
    return {"type": "record", "name": name, "namespace": "dev.onceflow.it", "fields": fields}


def test_a_schema_registered_through_ccompat_reads_back_by_id_and_subject(
    schema_registry_url: str, unique_name: Callable[[str], str]
) -> None:
    subject = unique_name("orders") + "-value"
    v1 = _schema("Order")
    v2 = _schema("Order", {"name": "note", "type": ["null", "string"], "default": None})
    registry = SchemaRegistry(schema_registry_url)

    first = registry.register(subject, v1)
    # The same schema laid out otherwise is the same schema (canonical form), same id.
    assert registry.register(subject, json.dumps(v1, indent=2)) == first
    second = registry.register(subject, v2)
    assert second != first

    fresh = SchemaRegistry(schema_registry_url)  # no cache: the registry answers
    for schema_id, schema in ((first, v1), (second, v2)):
        found = fresh.schema(schema_id)
        assert found is not None and found.schema_type == "AVRO"
        assert json.loads(found.text) == schema
    latest = fresh.latest(subject)
    assert latest is not None and (latest.version, latest.schema.schema_id) == (2, second)
    assert fresh.schema(2_000_000_000) is None
    assert fresh.latest(unique_name("never") + "-value") is None


def test_the_registry_refuses_an_invalid_schema_with_its_reason(
    schema_registry_url: str, unique_name: Callable[[str], str]
) -> None:
    registry = SchemaRegistry(schema_registry_url)
    with pytest.raises(RegistryError) as err:
        registry.register(unique_name("bad") + "-value", '{"type": "record", "name": ')
    assert 400 <= err.value.status < 500


def test_schema_ids_outlive_a_crash_of_the_local_registry(
    schema_registry_url: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker keeps its topics across a crash or ``stack down``/``up``; their records
    stay readable only if the registry keeps the ids in their framing (a file written at
    each commit, not memory nor H2's default 500 ms write delay: with that delay a SIGKILL
    right after a registration lost it and the next schema got its id).

    Crashes the session's registry when it is the local stack's; with
    ``ONCEFLOW_REGISTRY_URL`` set, a registry of its own on a free port.
    """
    local = LocalRegistry()
    own = local.url != schema_registry_url
    if own:
        monkeypatch.setenv("ONCEFLOW_HOME", str(tmp_path))
        local = LocalRegistry(RegistrySettings(port=free_port()))
        local.up(timeout=180)
    try:
        subject = unique_name("kept") + "-value"
        schema = _schema("Kept")
        schema_id = SchemaRegistry(local.url).register(subject, schema)

        local.kill(signal.SIGKILL)  # at once: no time for a delayed write
        _wait_closed(local.settings.port)
        local.down()
        local.up(timeout=180)
        found = SchemaRegistry(local.url).schema(schema_id)
        assert found is not None and json.loads(found.text) == schema

        assert local.down()  # and a clean stop
        assert not local.status().alive
        local.up(timeout=180)
        found = SchemaRegistry(local.url).schema(schema_id)
        assert found is not None and json.loads(found.text) == schema
        assert SchemaRegistry(local.url).register(subject, schema) == schema_id
        other = SchemaRegistry(local.url).register(subject + "-other", _schema("Other"))
        assert other != schema_id
    finally:
        if own:
            local.down()


def _wait_closed(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port):
        assert time.monotonic() < deadline, f"port {port} still open after the SIGKILL"
        time.sleep(0.1)


def test_ccompat_compatibility_endpoint_answers_for_new_and_existing_subjects(
    schema_registry_url: str, unique_name: Callable[[str], str]
) -> None:
    """What the registry's compatibility endpoint answers, which the start check relies on."""
    registry = SchemaRegistry(schema_registry_url)
    subject = unique_name("compat") + "-value"
    v1 = _schema("Compat")
    # No subject yet: nothing to be incompatible with.
    fresh = registry.check_compatibility(subject, v1)
    assert fresh.compatible

    registry.register(subject, v1)
    registry.set_compatibility_level(subject, "BACKWARD")
    assert registry.compatibility_level(subject) == "BACKWARD"
    with_default = _schema("Compat", {"name": "n", "type": ["null", "string"], "default": None})
    assert registry.check_compatibility(subject, with_default).compatible
    without_default = _schema("Compat", {"name": "n", "type": "string"})
    refused = registry.check_compatibility(subject, without_default)
    assert not refused.compatible


def test_an_incompatible_output_schema_is_refused_at_start_with_the_subject_and_reason(
    kafka_bootstrap: str,
    schema_registry_url: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """The dedup job's output subject is BACKWARD and holds a schema the job's would
    break (a field added without a default): the job refuses to start, in one line."""
    from onceflow.testing.harness import run_to_end

    topics = {name: topic_factory(name) for name in ("in", "out", "dlq")}
    registry = SchemaRegistry(schema_registry_url)
    for strategy, subject in (
        ("topic", f"{topics['out']}-value"),
        ("topic-record", f"{topics['out']}-dev.onceflow.it.Order"),
    ):
        registry.register(subject, _schema("Order"))
        registry.set_compatibility_level(subject, "BACKWARD")
        reader = tmp_path / f"{strategy}.avsc"
        reader.write_text(json.dumps(_schema("Order", {"name": "qty", "type": "long"})))
        args = ["--bootstrap", kafka_bootstrap, "--format", "avro"]
        args += ["--registry-url", schema_registry_url, "--reader-schema", str(reader)]
        args += ["--input-topic", topics["in"], "--output-topic", topics["out"]]
        args += ["--dlq-topic", topics["dlq"], "--subject-strategy", strategy]
        args += ["--transactional-id-prefix", unique_name("tx"), "--bounded"]
        job = run_to_end("onceflow.jobs.dedup", args, timeout=180)
        assert job.returncode != 0, job.stdout[-2000:]
        lines = [line for line in job.stderr.splitlines() if "not compatible" in line]
        assert len(lines) == 1, job.stderr[-3000:]
        assert f"subject {subject!r}" in lines[0] and "(compatibility BACKWARD)" in lines[0]
        assert "qty" in lines[0], lines[0]  # the registry's reason names the field
        assert "Traceback" not in job.stderr, job.stderr[-3000:]
        assert registry.latest(subject) is not None
        assert registry.latest(subject).version == 1  # type: ignore[union-attr]

"""The local stack's schema registry (Apicurio) through its Confluent-compatible API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from onceflow.avro.registry import RegistryError, SchemaRegistry
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


def test_schema_ids_outlive_a_restart_of_the_local_registry(
    schema_registry_url: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker keeps its topics across ``stack down``/``up``; their records stay
    readable only if the registry keeps the ids in their framing (a file, not memory).

    Restarts the session's registry when it is the local stack's; with
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

        assert local.down()
        assert not local.status().alive
        local.up(timeout=180)

        found = SchemaRegistry(local.url).schema(schema_id)
        assert found is not None and json.loads(found.text) == schema
        assert SchemaRegistry(local.url).register(subject, schema) == schema_id
    finally:
        if own:
            local.down()

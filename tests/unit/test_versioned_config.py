"""Unit tests for the versioned upsert job's configuration (no JVM, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onceflow.errors import OnceflowError
from onceflow.jobs.versioned_upsert import parse_config

pytestmark = pytest.mark.unit


def _args(tmp_path: Path, **overrides: str) -> list[str]:
    flags = {
        "input-topic": "in",
        "applied-topic": "entities",
        "stale-topic": "stale",
        "conflict-topic": "conflicts",
        "dlq-topic": "dlq",
        "changes-path": str(tmp_path / "changes"),
        "transactional-id-prefix": "cfg-test",
        **overrides,
    }
    return [part for key, value in flags.items() if value for part in (f"--{key}", value)]


def test_defaults_and_derived_specs(tmp_path: Path) -> None:
    cfg = parse_config(_args(tmp_path))
    assert cfg.mode == "newer_wins" and cfg.ttl_ms == 0 and not cfg.create_topics
    specs = cfg.sink_specs()
    assert set(specs) == {"applied", "stale", "conflict", "dlq"}
    prefixes = {s.transactional_id_prefix for s in specs.values()}
    assert prefixes == {"cfg-test-applied", "cfg-test-stale", "cfg-test-conflict", "cfg-test-dlq"}
    changes = cfg.changes_spec()
    assert changes.base_path == (tmp_path / "changes").as_uri()
    assert changes.bucketing == "datetime" and changes.part_prefix == "changes"
    assert cfg.failure_markers() is None


def test_yaml_config_and_cli_precedence(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("mode: compare_and_set\nttl-ms: 60000\nchanges-bucketing: none\n")
    cfg = parse_config([*_args(tmp_path), "--config", str(config), "--ttl-ms", "5000"])
    assert cfg.mode == "compare_and_set" and cfg.ttl_ms == 5000
    assert cfg.changes_spec().bucketing == "none"


@pytest.mark.parametrize(
    ("overrides", "extra", "message"),
    [
        ({"applied-topic": ""}, [], "set --applied-topic"),
        ({"changes-path": ""}, [], "set --changes-path"),
        ({"dlq-topic": "in"}, [], "would read its own output"),
        ({"stale-topic": "entities"}, [], "mix reports with entity values"),
        ({}, ["--ttl-ms", "-1"], "--ttl-ms must be >= 0"),
        ({}, ["--fail-on-change", "k"], "write KEY@VERSION"),
        ({}, ["--fail-on-change", "k@x"], "write KEY@VERSION"),
        ({}, ["--fail-on-change", "@3"], "write KEY@VERSION"),
        ({}, ["--changes-part-prefix", ".hidden"], "look like in-progress"),
        ({}, ["--changes-compression", "brotli"], "compression 'brotli'"),
        ({"changes-path": "ftp://host/x"}, [], "no filesystem for"),
    ],
)
def test_refused(tmp_path: Path, overrides: dict[str, str], extra: list[str], message: str) -> None:
    with pytest.raises(OnceflowError, match=message):
        parse_config([*_args(tmp_path, **overrides), *extra])


def test_bad_mode_is_refused_by_the_parser(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_config([*_args(tmp_path), "--mode", "last_wins"])


def test_failure_marker_dir_defaults_under_run(tmp_path: Path) -> None:
    cfg = parse_config([*_args(tmp_path), "--fail-on-change", "k@2", "--fail-on-change", "a@b@3"])
    assert cfg.fail_on_changes == ("k@2", "a@b@3")
    marker_dir = cfg.failure_markers()
    assert marker_dir is not None and marker_dir.endswith("run/faults/cfg-test")

"""The compiled versioned upsert job, inspected without a broker (JVM only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.versioned_upsert import CHANGES_SINK_UID, build_pipeline, parse_config
from onceflow.errors import OnceflowError
from onceflow.flinkenv import create_env
from sinks.files import FileSinkSpec, RecordSchema, attach_file_sink


def _args(changes: Path) -> list[str]:
    return [
        "--bootstrap",
        "localhost:1",
        "--input-topic",
        "in",
        "--applied-topic",
        "entities",
        "--stale-topic",
        "stale",
        "--conflict-topic",
        "conflicts",
        "--dlq-topic",
        "dlq",
        "--changes-path",
        str(changes),
        "--transactional-id-prefix",
        "plan-test",
    ]


@pytest.fixture(scope="module")
def compiled(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    cfg = parse_config(_args(tmp_path_factory.mktemp("changes")))
    env = create_env(cfg.flink_settings())
    build_pipeline(env, cfg)
    plan = json.loads(env.get_execution_plan())
    graph = env._generate_stream_graph(clear_transformations=False)
    nodes = [
        (n.getOperatorName(), n.getTransformationUID()) for n in graph.getStreamNodes().toArray()
    ]
    return plan, nodes


def test_plan_has_two_phase_commit_sinks_for_every_output(compiled: Any) -> None:
    plan, _ = compiled
    names = [node["type"] for node in plan["nodes"]]
    for sink in ("sink_applied", "sink_stale", "sink_conflict", "sink_dlq", CHANGES_SINK_UID):
        assert any(n.startswith(sink) and n.endswith("Writer") for n in names), names
        assert any(n.startswith(sink) and n.endswith("Committer") for n in names), names


def test_stateful_operators_and_sinks_have_stable_uids(compiled: Any) -> None:
    _, nodes = compiled
    # PyFlink chains the key selector into the parse operator ("parse-change, _stream_key_by...").
    uids = {name.split(",")[0]: uid for name, uid in nodes}
    assert uids.get("parse-change") == "parse-change"
    assert uids.get("versioned-update") == "versioned-update"
    assert uids.get(f"{CHANGES_SINK_UID}: Writer") == CHANGES_SINK_UID
    assert uids.get(f"{CHANGES_SINK_UID}: Committer") == f"Sink Committer: {CHANGES_SINK_UID}"
    sink_nodes = [(n, u) for n, u in nodes if "Writer" in n or "Committer" in n]
    assert len(sink_nodes) == 10 and all(u for _, u in sink_nodes), sink_nodes


def test_file_sink_refuses_a_stream_of_another_shape(tmp_path: Path) -> None:
    from pyflink.common import Types

    env = create_env(parse_config(_args(tmp_path)).flink_settings())
    spec = FileSinkSpec(str(tmp_path / "x"), schema=RecordSchema.of(("a", "STRING")))
    wrong = env.from_collection([("x",)], type_info=Types.ROW_NAMED(["b"], [Types.STRING()]))
    with pytest.raises(OnceflowError, match="parquet schema has columns"):
        attach_file_sink(env, wrong, spec, uid="x")
    retyped = RecordSchema.of(("b", "BIGINT"))  # same name, other type
    with pytest.raises(OnceflowError, match="typed"):
        attach_file_sink(env, wrong, FileSinkSpec(str(tmp_path / "z"), schema=retyped), uid="z")
    lines = FileSinkSpec(str(tmp_path / "y"), format="json-lines")
    with pytest.raises(OnceflowError, match="needs a STRING stream"):
        attach_file_sink(env, wrong, lines, uid="y")
    strings = env.from_collection(["{}"], type_info=Types.STRING())
    sink = attach_file_sink(env, strings, lines, uid="lines")
    assert sink is not None


def test_file_sink_refuses_an_environment_without_checkpointing(tmp_path: Path) -> None:
    # create_env always enables checkpointing; a bare environment has it off, like a
    # cluster whose config lacks execution.checkpointing.interval.
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment

    create_env(parse_config(_args(tmp_path)).flink_settings())  # JVM with onceflow's jars
    env = StreamExecutionEnvironment.get_execution_environment(Configuration())
    assert not env.get_checkpoint_config().is_checkpointing_enabled()
    strings = env.from_collection(["{}"], type_info=Types.STRING())
    with pytest.raises(OnceflowError, match="needs checkpointing"):
        attach_file_sink(env, strings, FileSinkSpec(str(tmp_path), format="json-lines"), uid="x")

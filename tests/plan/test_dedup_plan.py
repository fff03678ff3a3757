"""The compiled dedup job, inspected without a broker (JVM only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onceflow.jobs.dedup import build_pipeline, parse_config
from onceflow.runtime.flinkenv import create_env

ARGS = [
    "--bootstrap",
    "localhost:1",
    "--input-topic",
    "in",
    "--output-topic",
    "out",
    "--dlq-topic",
    "dlq",
    "--transactional-id-prefix",
    "plan-test",
]


@pytest.fixture(scope="module")
def compiled() -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    env = create_env(parse_config(ARGS).flink_settings())
    build_pipeline(env, parse_config(ARGS))
    plan = json.loads(env.get_execution_plan())
    graph = env._generate_stream_graph(clear_transformations=False)
    nodes = [
        (n.getOperatorName(), n.getTransformationUID()) for n in graph.getStreamNodes().toArray()
    ]
    return plan, nodes


def test_dedup_by_id_takes_the_jvm_path_flinks_own_deduplication(compiled: Any) -> None:
    plan, nodes = compiled
    uids = dict(nodes)
    dedup = [(n, u) for n, u in nodes if n.startswith("Deduplicate")]
    assert dedup == [(dedup[0][0], "dedup-jvm-stream-exec-deduplicate-deduplicate")], nodes
    assert uids.get("dedup-jvm-dead-letters") == "dedup-jvm-dead-letters"
    assert "dedup" not in uids.values(), "the Python path's operator is in the plan"
    assert "onceflow_json_id" in json.dumps(plan)
    used = [u for _, u in nodes if u is not None]
    assert len(used) == len(set(used)), "a uid is repeated: the job would not submit"


def test_dedup_path_python_forces_the_keyed_python_operator() -> None:
    args = [*ARGS, "--dedup-path", "python"]
    env = create_env(parse_config(args).flink_settings())
    build_pipeline(env, parse_config(args))
    graph = env._generate_stream_graph(clear_transformations=False)
    nodes = [
        (n.getOperatorName(), n.getTransformationUID()) for n in graph.getStreamNodes().toArray()
    ]
    assert dict(nodes).get("dedup") == "dedup", nodes
    assert not any(n.startswith("Deduplicate") for n, _ in nodes), nodes
    assert "onceflow_json_id" in env.get_execution_plan()  # keyed by the same scanner


def _nodes(args: list[str]) -> list[tuple[str, str | None]]:
    env = create_env(parse_config(args).flink_settings())
    build_pipeline(env, parse_config(args))
    graph = env._generate_stream_graph(clear_transformations=False)
    return [
        (n.getOperatorName(), n.getTransformationUID()) for n in graph.getStreamNodes().toArray()
    ]


def test_fingerprint_mode_takes_the_jvm_path_keyed_by_one_python_call() -> None:
    nodes = _nodes([*ARGS, "--fingerprint"])
    uids = [u for _, u in nodes if u is not None]
    assert "dedup-jvm-stream-exec-deduplicate-deduplicate" in uids, nodes
    # The identity's own translation: a Python calc, its result read by both queries.
    identity = [n for n, u in nodes if u and u.startswith("dedup-jvm-identity-")]
    assert any("PythonCalc" in n for n in identity), nodes
    assert sum("PythonCalc" in n for n, _ in nodes) == 1, "the record crosses into Python twice"
    assert not any("_stream_key_by_map_operator" in n for n, _ in nodes), nodes
    assert len(uids) == len(set(uids)), "a uid is repeated: the job would not submit"


def test_fingerprint_on_the_python_path_keys_in_python() -> None:
    nodes = _nodes([*ARGS, "--fingerprint", "--dedup-path", "python"])
    assert any("_stream_key_by_map_operator" in n for n, _ in nodes), nodes
    assert dict(nodes).get("dedup") == "dedup", nodes


def test_plan_has_two_phase_commit_sinks_for_output_and_dlq(compiled: Any) -> None:
    plan, _ = compiled
    names = [node["type"] for node in plan["nodes"]]
    for sink in ("out_sink", "dlq_sink"):
        assert any(n.startswith(sink) and n.endswith("Writer") for n in names), names
        assert any(n.startswith(sink) and n.endswith("Committer") for n in names), names


def test_stateful_operators_and_sinks_have_stable_uids(compiled: Any) -> None:
    _, nodes = compiled
    assert "dedup-jvm-stream-exec-deduplicate-deduplicate" in dict(nodes).values()
    sink_nodes = [
        (n, u) for n, u in nodes if ("Writer" in n or "Committer" in n) and "unwritten" not in n
    ]
    assert sorted(u for _, u in sink_nodes) == [
        "Sink Committer: dlq-sink-stream-exec-sink-sink",
        "Sink Committer: out-sink-stream-exec-sink-sink",
        "dlq-sink-stream-exec-sink-sink",
        "out-sink-stream-exec-sink-sink",
    ], sink_nodes
    sources = [u for n, u in nodes if n.startswith("Source:")]
    assert sources == ["source-stream-exec-table-source-scan-source"], nodes


def test_uids_do_not_depend_on_the_environments_uid_settings() -> None:
    """A user's environment may turn the planner's uids off or number them: ours stay."""
    cfg = parse_config(ARGS)
    env = create_env(cfg.flink_settings())
    from pyflink.common import Configuration

    env.configure(
        Configuration()
        .set_string("table.exec.uid.generation", "DISABLED")
        .set_string("table.exec.uid.format", "<id>_<transformation>")
    )
    build_pipeline(env, cfg)
    graph = env._generate_stream_graph(clear_transformations=False)
    uids = {n.getTransformationUID() for n in graph.getStreamNodes().toArray()}
    assert {
        "dedup-jvm-stream-exec-deduplicate-deduplicate",
        "out-sink-stream-exec-sink-sink",
        "dlq-sink-stream-exec-sink-sink",
    } <= uids
    # Nothing leaks into the user's own table environments on the same environment.
    from onceflow.streams import table_env

    leaked = table_env(env).get_config().get("table.exec.uid.format", "")
    assert leaked in ("", "<id>_<transformation>"), leaked

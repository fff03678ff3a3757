"""The compiled versioned upsert job, inspected without a broker (JVM only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onceflow.errors import OnceflowError
from onceflow.jobs.versioned_upsert import CHANGES_SINK_UID, build_pipeline, parse_config
from onceflow.runtime.flinkenv import create_env
from onceflow.sinks.files import FileSinkSpec, RecordSchema, attach_file_sink


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
    for sink in ("applied_sink", "stale_sink", "conflict_sink", "dlq_sink", CHANGES_SINK_UID):
        assert any(n.startswith(sink) and n.endswith("Writer") for n in names), names
        assert any(n.startswith(sink) and n.endswith("Committer") for n in names), names


def test_stateful_operators_and_sinks_have_stable_uids(compiled: Any) -> None:
    _, nodes = compiled
    uids = dict(nodes)
    assert uids.get("versioned-update") == "versioned-update-jvm"  # the default path
    assert uids.get(f"{CHANGES_SINK_UID}: Writer") == CHANGES_SINK_UID
    assert uids.get(f"{CHANGES_SINK_UID}: Committer") == f"Sink Committer: {CHANGES_SINK_UID}"
    sink_nodes = [
        (n, u) for n, u in nodes if ("Writer" in n or "Committer" in n) and "unwritten" not in n
    ]
    assert len(sink_nodes) == 10 and all(u for _, u in sink_nodes), sink_nodes
    for sink in ("applied-sink", "stale-sink", "conflict-sink", "dlq-sink"):
        table = sink.replace("-", "_")
        writer = [u for n, u in sink_nodes if n.startswith(table) and "Writer" in n]
        assert writer == [f"{sink}-stream-exec-sink-sink"], sink_nodes


def _operators(args: list[str]) -> list[tuple[str, str | None, str]]:
    """``(name, uid, class)`` of every operator of the job built with ``args``: the
    operator's class, or its user function's for a DataStream function."""
    env = create_env(parse_config(args).flink_settings())
    build_pipeline(env, parse_config(args))
    graph = env._generate_stream_graph(clear_transformations=False)
    found = []
    for node in graph.getStreamNodes().toArray():
        factory = node.getOperatorFactory()
        kind = factory.getClass().getName()
        if kind.endswith("SimpleUdfStreamOperatorFactory"):
            kind = factory.getUserFunctionClassName()
        elif kind.endswith("SimpleOperatorFactory"):
            kind = factory.getOperator().getClass().getName()
        found.append((node.getOperatorName(), node.getTransformationUID(), kind))
    return found


def test_jvm_path_crosses_into_python_once_and_decides_in_java(tmp_path: Path) -> None:
    operators = _operators(_args(tmp_path))
    python = [(n, k) for n, _, k in operators if ".operators.python." in k]
    # One Python SQL call per record (the parse), no Python DataStream operator.
    assert [k.rsplit(".", 1)[-1] for _, k in python] == ["EmbeddedPythonScalarFunctionOperator"]
    decision = [(u, k) for n, u, k in operators if n == "versioned-update"]
    assert decision == [("versioned-update-jvm", "dev.onceflow.udf.VersionedDecision")]


def test_python_path_is_one_keyed_python_operator(tmp_path: Path) -> None:
    operators = _operators([*_args(tmp_path), "--versioned-path", "python"])
    python = [(u, k.rsplit(".", 1)[-1]) for _, u, k in operators if ".operators.python." in k]
    assert python == [("versioned-update", "EmbeddedPythonKeyedProcessOperator")]


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


def test_keying_by_entity_runs_in_the_jvm_one_python_operator_per_record(compiled: Any) -> None:
    plan, _ = compiled
    contents = " ".join(node["contents"] for node in plan["nodes"])
    assert "JSON_VALUE" in contents
    types = [node["type"] for node in plan["nodes"]]
    # No Python key selector, no Python identity map behind the side output.
    assert not any("_stream_key_by_map_operator" in t for t in types), types
    assert "Map" not in types, types


# Raw values and the key the core parses from them ('' when it rejects the record).
KEY_SAMPLES = [
    (b'{"key": "e-1", "version": 1, "payload": {}}', "e-1"),
    (b'{"key": 42, "version": 1, "payload": {}}', "42"),
    (b'{"key": "42", "version": 1, "payload": {}}', "42"),
    (b'{"key": -7, "version": 1, "payload": {}}', "-7"),
    (b'{"key": 123456789012345678901234567890, "version": 1, "payload": {}}', None),
    (b'{"key": "caf\\u00e9 \\"q\\" \\\\ /", "version": 1, "payload": {}}', None),
    ('{"key": "\u00e9t\u00e9 \U0001f600", "version": 1, "payload": {}}'.encode(), None),
    (b'{"payload": {"key": "inner"}, "key": " spaced ", "version": 1}', " spaced "),
    (b'{"key": null, "version": 1}', ""),
    (b'{"version": 1}', ""),
    (b'{"key": {"a": 1}, "version": 1}', ""),
    (b"not json", ""),
]


def test_jvm_key_is_the_text_the_core_parses_as_entity_key() -> None:
    """The Flink key (JSON_VALUE in the source query) equals the core's ``str(key)``."""
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from onceflow.operators.records import Rejected, parse_object
    from onceflow.operators.versioned.core import parse_change
    from onceflow.operators.versioned.flink import sql_key_expression

    def core_key(raw: bytes) -> str:
        parsed = parse_object(raw, 1 << 20)
        event = parsed if isinstance(parsed, Rejected) else parse_change(parsed.value)
        return "" if isinstance(event, Rejected) else event.key

    expected = [core_key(raw) for raw, _ in KEY_SAMPLES]
    # The samples' own expectations, where spelled out, agree with the core.
    assert all(
        want is None or want == got for (_, want), got in zip(KEY_SAMPLES, expected, strict=True)
    )
    tenv = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    rows = [(i, bytearray(raw)) for i, (raw, _) in enumerate(KEY_SAMPLES)]
    schema = DataTypes.ROW(
        [DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.BYTES())]
    )
    tenv.create_temporary_view("samples", tenv.from_elements(rows, schema))
    query = f"SELECT i, {sql_key_expression()} FROM samples"
    with tenv.execute_sql(query).collect() as results:
        jvm = dict(tuple(row) for row in results)
    assert [jvm[i] for i in range(len(KEY_SAMPLES))] == expected


def test_record_keyed_by_another_value_than_its_parsed_key_is_a_dead_letter() -> None:
    """The guard behind the JVM keying: a key's state only ever sees its own entity."""
    from onceflow.operators.records import AMBIGUOUS_KEY, Rejected
    from onceflow.operators.versioned.core import ChangeEvent, ChangeSchema
    from onceflow.operators.versioned.flink import parse_event

    raw = b'{"key": "b", "version": 3, "payload": {"x": 1}}'
    event = parse_event(raw, "b", ChangeSchema(), 1 << 20)
    assert isinstance(event, ChangeEvent) and (event.key, event.version) == ("b", 3)
    rejected = parse_event(raw, "a", ChangeSchema(), 1 << 20)
    assert isinstance(rejected, Rejected) and rejected.reason == AMBIGUOUS_KEY, rejected


def test_field_buckets_compile_to_the_filesystem_connectors_file_writer(tmp_path: Path) -> None:
    args = [*_args(tmp_path), "--changes-bucketing", "field", "--changes-bucket-field", "op"]
    cfg = parse_config(args)
    env = create_env(cfg.flink_settings())
    build_pipeline(env, cfg)
    types = [node["type"] for node in json.loads(env.get_execution_plan())["nodes"]]
    assert "StreamingFileWriter" in types, types
    assert not any(t.startswith(CHANGES_SINK_UID) for t in types), types

"""Subject naming strategies (:mod:`onceflow.avro.subjects`) and the job flag."""

from __future__ import annotations

import json

import pytest

from onceflow.avro.subjects import SUBJECT_STRATEGIES, record_full_name, subject_name
from onceflow.errors import OnceflowError
from onceflow.jobs.dedup import parse_config

ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "dev.onceflow",
    "fields": [{"name": "id", "type": "string"}],
}
REQUIRED = ["--input-topic", "in", "--output-topic", "out", "--dlq-topic", "dlq"]
REGISTRY = "http://127.0.0.1:8085/apis/ccompat/v7"


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic", "orders-value"),
        ("record", "dev.onceflow.Order"),
        ("topic-record", "orders-dev.onceflow.Order"),
    ],
)
def test_each_strategy_names_the_subject_as_confluents_serializers_do(
    strategy: str, subject: str
) -> None:
    assert subject_name(strategy, "orders", ORDER) == subject
    assert subject_name(strategy, "orders", json.dumps(ORDER)) == subject  # text too


def test_full_names_follow_the_avro_spec() -> None:
    assert record_full_name({**ORDER, "namespace": ""}) == "Order"
    assert record_full_name({k: v for k, v in ORDER.items() if k != "namespace"}) == "Order"
    # A dotted name is already full: its namespace is ignored.
    assert record_full_name({**ORDER, "name": "com.acme.Order"}) == "com.acme.Order"


def test_topic_strategy_needs_no_schema_and_record_strategies_need_a_named_record() -> None:
    assert subject_name("topic", "t", None) == "t-value"
    with pytest.raises(OnceflowError, match="needs the record schema"):
        subject_name("record", "t", None)
    with pytest.raises(OnceflowError, match="must be an Avro record with a name"):
        subject_name("topic-record", "t", {"type": "string"})
    with pytest.raises(OnceflowError, match="not one of"):
        subject_name("RecordNameStrategy", "t", ORDER)


def test_the_job_flag_takes_the_strategies_and_only_with_avro() -> None:
    avro = [*REQUIRED, "--format", "avro", "--registry-url", REGISTRY]
    assert parse_config(avro).subject_strategy == "topic"
    for strategy in SUBJECT_STRATEGIES:
        assert parse_config([*avro, "--subject-strategy", strategy]).subject_strategy == strategy
    with pytest.raises(OnceflowError, match="need --format avro"):
        parse_config([*REQUIRED, "--subject-strategy", "record"])
    with pytest.raises(SystemExit):  # argparse refuses an unknown choice
        parse_config([*avro, "--subject-strategy", "records"])

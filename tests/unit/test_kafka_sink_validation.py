"""The Kafka sink factory refuses configurations that break its guarantee."""

from __future__ import annotations

import pytest

from onceflow.errors import OnceflowError
from onceflow.sinks.kafka import KafkaSinkSpec, validate_record_size, validate_sink


def _spec(**kw: object) -> KafkaSinkSpec:
    base: dict[str, object] = {
        "bootstrap": "localhost:9092",
        "topic": "out",
        "transactional_id_prefix": "job-1-out",
    }
    base.update(kw)
    return KafkaSinkSpec(**base)  # type: ignore[arg-type]


def _validate(spec: KafkaSinkSpec, interval: int = 2000, broker_max: int | None = 900_000) -> None:
    validate_sink(
        spec,
        checkpoint_interval_ms=interval,
        restart_budget_ms=300_000,
        broker_max_timeout_ms=broker_max,
    )


def test_a_sound_exactly_once_sink_passes() -> None:
    _validate(_spec(transaction_timeout_ms=600_000))


def test_exactly_once_needs_a_transactional_id_prefix() -> None:
    with pytest.raises(OnceflowError, match="transactional id prefix"):
        _spec(transactional_id_prefix=None)


def test_exactly_once_without_checkpointing_is_refused() -> None:
    with pytest.raises(OnceflowError, match="checkpointing is off"):
        _validate(_spec(), interval=0)


def test_timeout_above_the_broker_maximum_is_refused_with_both_numbers() -> None:
    with pytest.raises(OnceflowError, match=r"\(3600000\) exceeds the broker's .*\(900000\)"):
        _validate(_spec(transaction_timeout_ms=3_600_000))


def test_timeout_not_above_interval_plus_restart_budget_is_refused() -> None:
    with pytest.raises(OnceflowError, match="checkpoint interval \\+ restart budget"):
        _validate(_spec(transaction_timeout_ms=301_000), interval=2000)


def test_unknown_broker_limit_skips_only_that_check() -> None:
    _validate(_spec(transaction_timeout_ms=3_600_000), broker_max=None)


def test_at_least_once_needs_no_prefix_and_no_checkpointing() -> None:
    _validate(_spec(guarantee="at-least-once", transactional_id_prefix=None), interval=0)


@pytest.mark.parametrize("topic", ["", "has space", "x" * 250])
def test_invalid_topic_names_are_refused(topic: str) -> None:
    with pytest.raises(OnceflowError, match="not a valid Kafka topic"):
        _spec(topic=topic)


def test_secret_kafka_properties_are_redacted_in_the_job_config_repr() -> None:
    from onceflow.jobs.dedup import parse_config

    cfg = parse_config(
        [
            "--input-topic", "i", "--output-topic", "o", "--dlq-topic", "d",
            "--transactional-id-prefix", "p",
            "--kafka-property", "sasl.jaas.config=secret-value",
            "--kafka-property", "security.protocol=SASL_SSL",
        ]
    )  # fmt: skip
    assert "secret-value" not in repr(cfg) and "SASL_SSL" in repr(cfg)


def test_record_size_must_fit_the_topic_and_the_producer() -> None:
    validate_record_size(_spec(max_value_bytes=1_000_000), topic_max_bytes=1_048_588)
    validate_record_size(_spec(), topic_max_bytes=10)  # no declared size: nothing to check
    validate_record_size(_spec(max_value_bytes=1_000_000), topic_max_bytes=None)
    with pytest.raises(OnceflowError, match="max.message.bytes"):
        validate_record_size(_spec(max_value_bytes=1_000_000), topic_max_bytes=500_000)
    with pytest.raises(OnceflowError, match="max.request.size"):
        validate_record_size(_spec(max_value_bytes=2_000_000), topic_max_bytes=None)
    roomy = _spec(max_value_bytes=2_000_000, properties={"max.request.size": "3000000"})
    validate_record_size(roomy, topic_max_bytes=3_000_000)

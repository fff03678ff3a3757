"""Creating and checking a job's Kafka topics before it starts (admin client, no Flink).

A job never needs this to be correct, but two mistakes are cheap to catch here
and expensive later: a missing output topic (the broker may auto-create it
with the wrong settings, or the sink fails at the first write) and a
"latest value per key" topic without ``cleanup.policy=compact`` (retention
then deletes old keys' only record, and a reader rebuilding the table loses
them silently).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from onceflow.errors import OnceflowError

__all__ = ["cleanup_policy", "ensure_topics", "partition_count"]

log = logging.getLogger(__name__)


def _admin(bootstrap: str, timeout_s: float) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))


def partition_count(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int | None:
    """The number of partitions of ``topic``, or None when it does not exist."""
    admin = _admin(bootstrap, timeout_s)
    try:
        if topic not in admin.list_topics():
            return None
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        admin.close()


def cleanup_policy(bootstrap: str, topic: str, timeout_s: float = 10.0) -> str | None:
    """``cleanup.policy`` of ``topic`` (e.g. ``compact``, ``delete,compact``); None if unknown."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _admin(bootstrap, timeout_s)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=["cleanup.policy"])
        found = admin.describe_configs([resource], config_filter="all")
        entry = found.get("topic", {}).get(topic, {}).get("cleanup.policy")
        return None if entry is None else str(entry["value"])
    except Exception as exc:  # noqa: BLE001 - a check, not a requirement
        log.warning("could not read cleanup.policy of %s: %s", topic, exc)
        return None
    finally:
        admin.close()


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, Mapping[str, str]],
    partitions: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics of ``topics`` that do not exist yet (name -> topic configs).

    Existing topics are left as they are. The replication factor is the
    broker's default (``-1``), so single-node and production clusters both work.

    :param partitions: partition count of the created topics.
    :returns: the names created.
    :raises OnceflowError: if the broker refuses a creation.
    """
    admin = _admin(bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {
                "num_partitions": partitions,
                "replication_factor": -1,
                "configs": dict(configs),
            }
            for name, configs in topics.items()
            if name not in existing
        }
        if missing:
            try:
                admin.create_topics(missing, wait_for_metadata=True)
            except Exception as exc:  # noqa: BLE001 - kafka-python raises many error types
                raise OnceflowError(
                    f"could not create topics {', '.join(sorted(missing))} on {bootstrap}: "
                    f"{exc}; create them yourself or check the ACLs of this client"
                ) from exc
            log.info("created topics %s", ", ".join(sorted(missing)))
        return sorted(missing)
    finally:
        admin.close()

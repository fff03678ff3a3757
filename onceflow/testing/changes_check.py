"""Check a versioned upsert job's outputs against the oracle, as exact multisets.

Used by the job's integration tests and by ``onceflow verify --job
versioned-upsert``. Every output is read the way a downstream user would:
Kafka topics with ``read_committed``, the Parquet log through
:func:`onceflow.sinks.files.read_committed_parquet` (committed part files only).

Reports (one :class:`~onceflow.testing.check.CheckReport` each):

- ``parquet``: one row per applied (key, version), nothing else;
- ``applied``: the applied topic, one record per applied change (payload or
  tombstone), compared as (key, value);
- ``latest``: the applied topic's last value per key equals the oracle's final
  state (what compaction converges to);
- ``stale`` / ``conflict``: the reports, compared by (key, version, reason...);
- ``dlq`` and ``dlq reasons``: every malformed record once, with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from onceflow.testing.changes import ChangeOracle, applied_identity, report_identity, row_identity
from onceflow.testing.check import CheckReport, compare, compare_dead_letters
from onceflow.testing.drain import ConsumedRecord, read_committed

__all__ = ["ChangeOutputs", "compare_outputs", "last_per_key", "read_outputs"]

#: Output roles of the job, each a Kafka topic.
TOPIC_ROLES = ("applied", "stale", "conflict", "dlq")


@dataclass(frozen=True)
class ChangeOutputs:
    """What the job committed: the Kafka outputs and the Parquet rows.

    :param topics: role (``applied``, ``stale``, ``conflict``, ``dlq``) -> records.
    :param rows: the committed Parquet rows.
    """

    topics: Mapping[str, list[ConsumedRecord]]
    rows: list[dict[str, Any]]


def read_outputs(
    bootstrap: str,
    topics: Mapping[str, str],
    changes_path: str | Path,
    *,
    quiet_ms: int = 300,
    progress: bool = False,
) -> ChangeOutputs:
    """Drain every output topic (read_committed) and read the committed Parquet rows.

    :param topics: role -> topic name, for every role in :data:`TOPIC_ROLES`.
    :param quiet_ms: how long a topic must stay quiet to count as drained.
    """
    from onceflow.operators.versioned.output import CHANGE_COLUMNS
    from onceflow.sinks.files import RecordSchema, read_committed_parquet

    drained = {
        role: read_committed(bootstrap, topics[role], quiet_ms=quiet_ms, progress=progress)
        for role in TOPIC_ROLES
    }
    # The job's Parquet schema (operators.versioned.flink.CHANGES_SCHEMA, without pyflink).
    rows = read_committed_parquet(changes_path, RecordSchema.of(*CHANGE_COLUMNS)).to_pylist()
    return ChangeOutputs(drained, rows)


def last_per_key(records: list[ConsumedRecord]) -> dict[str, bytes | None]:
    """The last value per key, in offset order (a key lives in one partition)."""
    latest: dict[str, bytes | None] = {}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[(rec.key or b"").decode("utf-8")] = rec.value
    return latest


def compare_outputs(oracle: ChangeOracle, outputs: ChangeOutputs) -> dict[str, CheckReport]:
    """Exact multiset reports of every output (see the module docstring)."""
    from onceflow.operators.records import parse_dead_letter
    from onceflow.operators.versioned.core import CONFLICT, STALE

    applied, dlq = outputs.topics["applied"], outputs.topics["dlq"]

    def named(report: CheckReport, name: str) -> CheckReport:
        return replace(report, name=name)

    def reports_of(role: str, kind: str) -> CheckReport:
        seen = (repr(report_identity(r.value)) for r in outputs.topics[role])
        return named(compare(map(repr, oracle.reports(kind)), seen), f"{role} topic")

    return {
        "parquet": named(
            compare(map(repr, oracle.change_rows()), (repr(row_identity(r)) for r in outputs.rows)),
            "parquet",
        ),
        "applied": named(
            compare(
                map(repr, oracle.applied_records()),
                (repr(applied_identity(r.key, r.value)) for r in applied),
            ),
            "applied topic",
        ),
        "latest": named(
            compare(
                (repr(kv) for kv in sorted(oracle.final.items())),
                (repr(kv) for kv in sorted(last_per_key(applied).items())),
            ),
            "latest value per key",
        ),
        "stale": reports_of("stale", STALE),
        "conflict": reports_of("conflict", CONFLICT),
        "dlq": compare_dead_letters([v for v, _ in oracle.dead_letters if v is not None], dlq),
        "dlq reasons": named(
            compare(
                (reason for _, reason in oracle.dead_letters),
                (parse_dead_letter(r.value)["reason"] for r in dlq if r.value is not None),
            ),
            "dead-letter reasons",
        ),
    }

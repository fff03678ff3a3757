"""What the verifier runs and how it judges it: one target per job.

A target owns everything job-specific: the topics, the workload and how it is
fed, the job's own flags (including the records at which ``operator-exception``
faults fire), and the check of the committed outputs against the workload's
expectation. The runner owns the cluster, the faults and the timeline.

- ``dedup``: records with 30% duplicates and 1% malformed; the output must hold
  every distinct valid id exactly once, the DLQ every malformed record once.
- ``versioned-upsert``: change events with duplicates, conflicts, shuffled
  versions and malformed records; the applied topic, the stale/conflict/DLQ
  topics and the Parquet log must equal the oracle's
  (:mod:`onceflow.testing.changes_check`) exactly.
- ``versioned-upsert-postgres``: the same job and checks, plus its PostgreSQL table
  output (the exactly-once XA sink, ``--pg-url``/``--pg-table``): each key's row
  must be the oracle's final state, and no prepared transaction may be left. It
  also gets the PostgreSQL faults (:data:`~onceflow.verify.faults.POSTGRES_FAULT_KINDS`).

Both name anomalies as Jepsen's Kafka checker does: ``lost``, ``duplicate``,
``unexpected``; ``nonmonotonic`` counts records of one key whose sequence
field went backwards in offset order (``seq`` of dedup records, the payload's
``v`` of applied changes). The versioned job adds ``wrong-final-state`` (keys
whose last applied value is not the oracle's) and ``wrong-dlq-reason``; the
PostgreSQL target ``table-lost`` (keys the oracle has and the table lacks),
``table-extra`` (keys only the table has), ``table-wrong-row`` (a key whose
version, deleted flag or payload differs) and ``prepared-left`` (transactions
still in ``pg_prepared_xacts`` when the job has stopped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from onceflow.errors import OnceflowError
from onceflow.testing.check import CheckReport
from onceflow.testing.drain import ConsumedRecord
from onceflow.verify.faults import Profile

__all__ = [
    "TARGETS",
    "Checked",
    "DedupTarget",
    "Target",
    "TableRow",
    "VersionedUpsertPostgresTarget",
    "VersionedUpsertTarget",
    "check_format",
    "compare_table",
    "expected_table",
    "nonmonotonic",
]


@dataclass
class Checked:
    """A target's verdict on the committed outputs."""

    counts: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)


class Target(Protocol):
    """One job under verification (see the module docstring)."""

    #: Name on the command line (``--job``).
    name: str
    #: The job's file, submitted with ``flink run -py``.
    job_file: str
    #: Topic role -> (partitions, topic configs); ``in`` is the input.
    topics: dict[str, tuple[int, dict[str, str]]]
    #: The output whose committed offsets the sampler follows.
    watch: str
    #: The job flag that arms one operator exception (repeatable).
    fail_flag: str
    #: Whether the job writes PostgreSQL (the runner then brings up the database,
    #: sets :attr:`pg_url` before :meth:`job_args`, and schedules PostgreSQL faults).
    writes_postgres: bool
    #: The database the job writes (None for targets that write none).
    pg_url: str | None
    #: The record formats the target can run in (``--format``); the first is the default.
    formats: tuple[str, ...]

    def use_format(self, value_format: str, registry_url: str | None, input_topic: str) -> None:
        """Run in ``value_format`` (Avro: the schema registry at ``registry_url``, the
        input's schema registered under ``<input_topic>-value``); before :meth:`prepare`."""
        ...

    def prepare(self, profile: Profile, seed: int) -> int:
        """Build the workload; returns the number of input records."""
        ...

    def fail_points(self, positions: Sequence[int]) -> list[str]:
        """One failure point (the flag's value) at or after each input position."""
        ...

    def job_args(self, topics: dict[str, str], out_dir: Path) -> list[str]:
        """The job's own flags: its topics and paths."""
        ...

    def feed(self, bootstrap: str, topic: str, rate: float) -> None:
        """Write the whole workload to ``topic`` at ``rate`` records/s."""
        ...

    def check(
        self, bootstrap: str, topics: dict[str, str], out_dir: Path, progress: bool
    ) -> tuple[Checked, list[ConsumedRecord]]:
        """The verdict, and the committed records of :attr:`watch` (for aborted-read)."""
        ...


def _json_value(value: bytes | None) -> Any:
    return json.loads(value or b"null")


def nonmonotonic(
    records: Iterable[ConsumedRecord],
    field_name: str,
    decode: Callable[[bytes | None], Any] = _json_value,
) -> int:
    """Per key, records whose ``field_name`` is lower than an earlier one's (offset order).

    :param decode: a record's value as a mapping (JSON by default; records it cannot
        read, or that lack the field, are skipped).
    """
    last: dict[bytes, int] = {}
    bad = 0
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            seq = int(decode(rec.value)[field_name])
        except (ValueError, KeyError, TypeError):
            continue
        key = rec.key or b""
        if key in last and seq < last[key]:
            bad += 1
        last[key] = max(seq, last.get(key, seq))
    return bad


def _anomalies(reports: Iterable[CheckReport]) -> tuple[dict[str, int], dict[str, list[str]]]:
    reports = list(reports)
    anomalies = {
        "lost": sum(r.missing for r in reports),
        "duplicate": sum(r.duplicated for r in reports),
        "unexpected": sum(r.unexpected + r.invalid for r in reports),
    }
    examples = {
        "lost": [e for r in reports for e in r.missing_examples],
        "duplicate": [e for r in reports for e in r.duplicated_examples],
        "unexpected": [e for r in reports for e in r.unexpected_examples],
    }
    return anomalies, examples


class DedupTarget:
    """The dedup job (jobs/dedup.py)."""

    name = "dedup"
    job_file = "jobs/dedup.py"
    topics: dict[str, tuple[int, dict[str, str]]] = {"in": (4, {}), "out": (2, {}), "dlq": (1, {})}
    watch = "out"
    fail_flag = "--fail-on-id"
    writes_postgres = False
    pg_url: str | None = None
    #: ``avro``: the same workload Confluent-framed (:mod:`onceflow.testing.avro_workload`:
    #: same ids and order, Avro's own malformed classes), the job run with ``--format avro``.
    formats: tuple[str, ...] = ("json", "avro")
    value_format = "json"
    registry_url: str | None = None
    subject = ""

    def use_format(self, value_format: str, registry_url: str | None, input_topic: str) -> None:
        self.value_format = check_format(type(self), value_format)
        if value_format == "avro" and not registry_url:
            raise ValueError("an Avro run needs the schema registry's URL")
        self.registry_url, self.subject = registry_url, f"{input_topic}-value"

    def prepare(self, profile: Profile, seed: int) -> int:
        from onceflow.testing.workload import Expectation, WorkloadSpec, generate

        self.spec = WorkloadSpec(
            count=profile.records, duplicate_ratio=0.3, malformed_ratio=0.01, seed=seed,
            oversize_every=0,
        )  # fmt: skip
        if self.value_format == "avro":
            from onceflow.avro.registry import SchemaRegistry
            from onceflow.testing.avro_workload import avro_items, workload_schema

            assert self.registry_url is not None
            schema_id = SchemaRegistry(self.registry_url).register(self.subject, workload_schema())
            self.items = list(avro_items(self.spec, schema_id))
        else:
            self.items = list(generate(self.spec))
        self.expectation = Expectation.collect(self.items, self.spec)
        return len(self.items)

    def fail_points(self, positions: Sequence[int]) -> list[str]:
        chosen: list[str] = []
        for index in positions:
            ident = next(
                it.ident
                for it in self.items[index:]
                if it.kind == "unique" and it.ident is not None and it.ident not in chosen
            )
            chosen.append(ident)
        return chosen

    def job_args(self, topics: dict[str, str], out_dir: Path) -> list[str]:
        args = ["--input-topic", topics["in"], "--output-topic", topics["out"],
                "--dlq-topic", topics["dlq"]]  # fmt: skip
        if self.value_format == "avro":
            assert self.registry_url is not None
            args += ["--format", "avro", "--registry-url", self.registry_url]
        return args

    def feed(self, bootstrap: str, topic: str, rate: float) -> None:
        from onceflow.testing.produce import produce

        produce(
            bootstrap, topic, self.spec, None, progress=False, rate=rate,
            value_format=self.value_format, registry_url=self.registry_url,
            subject=self.subject or None,
        )  # fmt: skip

    def check(
        self, bootstrap: str, topics: dict[str, str], out_dir: Path, progress: bool
    ) -> tuple[Checked, list[ConsumedRecord]]:
        from onceflow.testing.check import check_output, compare_dead_letters
        from onceflow.testing.drain import read_committed

        committed = read_committed(bootstrap, topics["out"], quiet_ms=2000, progress=progress)
        dlq = read_committed(bootstrap, topics["dlq"], quiet_ms=2000, progress=progress)
        if self.value_format == "avro":
            id_of, decode = self._avro_readers()
            output = check_output(self.expectation.unique_ids, committed, id_of=id_of)
        else:
            decode = _json_value
            output = check_output(self.expectation.unique_ids, committed)
        dead = compare_dead_letters(self.expectation.malformed_values, dlq)
        anomalies, examples = _anomalies([output, dead])
        anomalies["nonmonotonic"] = nonmonotonic(committed, "seq", decode)
        counts = {
            "input_records": self.spec.count,
            "expected_output": len(self.expectation.unique_ids),
            "output_committed": len(committed),
            "expected_dead_letters": self.expectation.malformed,
            "dead_letters": len(dlq),
        }
        return Checked(counts, anomalies, examples), committed

    def _avro_readers(self) -> tuple[Any, Callable[[bytes | None], Any]]:
        """The output's ``id_of`` for :func:`check_output` and a value decoder (the
        output's writer schemas from the registry, read with the workload's schema)."""
        from onceflow.avro.registry import SchemaRegistry
        from onceflow.avro.wire import AvroDecoder, Decoded
        from onceflow.testing.avro_workload import workload_schema
        from onceflow.testing.check import avro_id_of

        assert self.registry_url is not None
        decoder = AvroDecoder.from_registry(SchemaRegistry(self.registry_url), workload_schema())

        def decode(value: bytes | None) -> Any:
            decoded = decoder.decode(value)
            return decoded.record if isinstance(decoded, Decoded) else None

        return avro_id_of(decoder), decode


def check_format(target: type[DedupTarget] | type[VersionedUpsertTarget], value_format: str) -> str:
    """``value_format`` when ``target`` can run in it (``--format``, checked before anything
    starts and again by :meth:`Target.use_format`).

    :raises OnceflowError: it cannot, naming the formats it has.
    """
    if value_format not in target.formats:
        raise OnceflowError(
            f"the {target.name} job runs in {', '.join(target.formats)}, not {value_format}: "
            f"choose --format {target.formats[0]}"
        )
    return value_format


class VersionedUpsertTarget:
    """The versioned upsert job (jobs/versioned_upsert.py), ``newer_wins``."""

    name = "versioned-upsert"
    job_file = "jobs/versioned_upsert.py"
    # Compacted like in production, but the cleaner leaves the run's records alone.
    topics: dict[str, tuple[int, dict[str, str]]] = {
        "in": (4, {}),
        "applied": (2, {"cleanup.policy": "compact", "min.compaction.lag.ms": "86400000"}),
        "stale": (1, {}),
        "conflict": (1, {}),
        "dlq": (1, {}),
    }
    watch = "applied"
    fail_flag = "--fail-on-change"
    writes_postgres = False
    pg_url: str | None = None
    formats: tuple[str, ...] = ("json",)

    def use_format(self, value_format: str, registry_url: str | None, input_topic: str) -> None:
        check_format(type(self), value_format)

    def prepare(self, profile: Profile, seed: int) -> int:
        from onceflow.operators.versioned.core import NEWER_WINS
        from onceflow.testing.changes import ChangeWorkloadSpec, expected_changes, generate_changes

        # Duplicates, conflicts and malformed records come on top of the changes.
        base = ChangeWorkloadSpec(changes=0, keys=1, seed=seed)
        extra = base.duplicate_ratio + base.conflict_ratio + base.malformed_ratio
        changes = max(1, round(profile.records / (1 + extra)))
        self.spec = ChangeWorkloadSpec(changes=changes, keys=max(1, changes // 40), seed=seed)
        self.items = generate_changes(self.spec)
        self.oracle = expected_changes([it.value for it in self.items], NEWER_WINS)
        return len(self.items)

    def fail_points(self, positions: Sequence[int]) -> list[str]:
        # A change fires on its first arrival: pick changes whose (key, version) is new there.
        first: dict[str, int] = {}
        for i, it in enumerate(self.items):
            if it.kind == "change" and it.entity is not None:
                first.setdefault(f"{it.entity}@{it.version}", i)
        candidates = sorted((i, change) for change, i in first.items())
        chosen: list[str] = []
        for index in positions:
            change = next(c for i, c in candidates if i >= index and c not in chosen)
            chosen.append(change)
        return chosen

    def job_args(self, topics: dict[str, str], out_dir: Path) -> list[str]:
        return [
            "--input-topic", topics["in"], "--applied-topic", topics["applied"],
            "--stale-topic", topics["stale"], "--conflict-topic", topics["conflict"],
            "--dlq-topic", topics["dlq"], "--changes-path", str(out_dir / "changes"),
        ]  # fmt: skip

    def feed(self, bootstrap: str, topic: str, rate: float) -> None:
        from onceflow.testing.recovery import send

        send(bootstrap, topic, [(it.key, it.value) for it in self.items], rate=rate)

    def check(
        self, bootstrap: str, topics: dict[str, str], out_dir: Path, progress: bool
    ) -> tuple[Checked, list[ConsumedRecord]]:
        from onceflow.testing.changes_check import compare_outputs, read_outputs

        outputs = read_outputs(
            bootstrap, topics, out_dir / "changes", quiet_ms=2000, progress=progress
        )
        reports = compare_outputs(self.oracle, outputs)
        # "latest" and "dlq reasons" derive from the applied topic and the DLQ: counting
        # their records again would count one anomaly twice. They get their own names.
        judged = [r for name, r in reports.items() if name not in ("latest", "dlq reasons")]
        anomalies, examples = _anomalies(judged)
        anomalies["wrong-final-state"] = reports["latest"].missing
        anomalies["wrong-dlq-reason"] = reports["dlq reasons"].unexpected
        anomalies["nonmonotonic"] = nonmonotonic(outputs.topics["applied"], "v")
        applied = outputs.topics["applied"]
        counts = {
            "input_records": len(self.items),
            "expected_output": len(self.oracle.applied),
            "output_committed": len(applied),
            "expected_dead_letters": len(self.oracle.dead_letters),
            "dead_letters": len(outputs.topics["dlq"]),
            "parquet_rows": len(outputs.rows),
            "stale": len(outputs.topics["stale"]),
            "conflict": len(outputs.topics["conflict"]),
        }
        return Checked(counts, anomalies, examples), applied


TableRow = tuple[str, int, bool, "str | None"]
"""A row of the versioned job's table: ``(key, version, deleted, payload)``."""


def expected_table(applied: Iterable[Any]) -> dict[str, TableRow]:
    """Per key, the row the table must hold: its last applied event (the oracle's
    ``applied``, in arrival order), a delete as a tombstone row."""
    from onceflow.operators.versioned.core import DELETE
    from onceflow.operators.versioned.output import json_text

    rows: dict[str, TableRow] = {}
    for event in applied:
        payload = None if event.payload is None else json_text(event.payload)
        rows[event.key] = (event.key, int(event.version), event.op == DELETE, payload)
    return rows


def compare_table(
    expected: dict[str, TableRow], rows: Iterable[tuple[Any, ...]], examples: int = 5
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """The table's anomalies: ``table-lost``, ``table-extra``, ``table-wrong-row``."""
    found: dict[str, TableRow] = {}
    for key, version, deleted, payload in rows:
        found[str(key)] = (str(key), int(version), bool(deleted), payload)
    lost = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    anomalies = {"table-lost": len(lost), "table-extra": len(extra), "table-wrong-row": len(wrong)}
    shown = {
        "table-lost": [repr(expected[k]) for k in lost[:examples]],
        "table-extra": [repr(found[k]) for k in extra[:examples]],
        "table-wrong-row": [f"{found[k]!r}, expected {expected[k]!r}" for k in wrong[:examples]],
    }
    return anomalies, shown


class VersionedUpsertPostgresTarget(VersionedUpsertTarget):
    """The versioned upsert job with its PostgreSQL table output (exactly-once XA sink).

    Everything :class:`VersionedUpsertTarget` checks, plus the table read back with
    psycopg once the job has stopped (see the module docstring). The runner counts
    the prepared transactions the run left (``prepared-left``): it owns the database.
    """

    name = "versioned-upsert-postgres"
    writes_postgres = True

    def job_args(self, topics: dict[str, str], out_dir: Path) -> list[str]:
        if self.pg_url is None:
            raise ValueError("the runner sets pg_url before asking for the job's flags")
        # One fresh table per run, named after the run's topics (a valid SQL name).
        self.table = "v_" + re.sub(r"[^A-Za-z0-9_]", "_", topics["in"])[:60]
        return [
            *super().job_args(topics, out_dir),
            "--pg-url", self.pg_url, "--pg-table", self.table, "--pg-create-table",
        ]  # fmt: skip

    def check(
        self, bootstrap: str, topics: dict[str, str], out_dir: Path, progress: bool
    ) -> tuple[Checked, list[ConsumedRecord]]:
        import psycopg

        checked, applied = super().check(bootstrap, topics, out_dir, progress)
        assert self.pg_url is not None
        with psycopg.connect(self.pg_url, connect_timeout=10) as conn:
            rows = conn.execute(
                f"SELECT key, version, deleted, payload FROM {self.table}"  # a checked name
            ).fetchall()
        expected = expected_table(self.oracle.applied)
        anomalies, examples = compare_table(expected, rows)
        checked.anomalies.update(anomalies)
        checked.examples.update(examples)
        checked.counts.update(
            {
                "expected_table_rows": len(expected),
                "table_rows": len(rows),
                "table_tombstones": sum(1 for row in rows if row[2]),
            }
        )
        return checked, applied


TARGETS: dict[str, type[DedupTarget] | type[VersionedUpsertTarget]] = {
    DedupTarget.name: DedupTarget,
    VersionedUpsertTarget.name: VersionedUpsertTarget,
    VersionedUpsertPostgresTarget.name: VersionedUpsertPostgresTarget,
}

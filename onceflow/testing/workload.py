"""Deterministic input workloads for the dedup job, and what its output must be.

A workload is a stream of JSON records, some of which repeat an earlier record
(duplicates) and some of which are malformed. :func:`generate` builds it from a
:class:`WorkloadSpec`; the same spec (seed included) always yields the same
bytes in the same order, on any machine and Python 3.11+, so a run can be
reproduced from its spec alone.

:class:`Expectation` is the oracle derived from a workload: the ids an
exactly-once dedup job must emit (each once, in first-seen order), and the
malformed values it must route to the dead-letter queue (each once). It is
saved next to a produced topic and read back by ``onceflow check``.

This module is pure: no Kafka, no clock, no global random state.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import random
import string
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "MALFORMED_REASONS",
    "Expectation",
    "WorkItem",
    "WorkloadSpec",
    "expectation_for",
    "generate",
    "valid_id",
]

log = logging.getLogger(__name__)

#: Duplicates repeat one of the most recent N unique ids (unless ``keys`` says
#: otherwise), so a dedup job whose state TTL covers that many ids sees every
#: duplicate within its horizon.
DEFAULT_DUPLICATE_WINDOW = 10_000

#: Reasons a record is malformed, in the order the generator rotates through
#: them (``oversize`` is placed separately, see :attr:`WorkloadSpec.oversize_every`).
#: They are the rejection reasons of :mod:`onceflow.operators.records` (the id field is
#: the "field"), so a dead letter's ``reason`` can be compared with them.
MALFORMED_REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "missing_field",
    "null_field",
    "empty_field",
    "wrong_type",
    "oversize",
)
_ROTATING_REASONS = MALFORMED_REASONS[:-1]

_FORMAT = "onceflow-expectation/1"
_TS_STEP_MS = 10  # records are spaced 10 ms apart in event time
_FILLER_LEN = 1 << 16

Kind = Literal["unique", "duplicate", "malformed"]


def valid_id(value: object) -> bool:
    """Whether ``value`` (a decoded JSON field) is an acceptable record id.

    The dedup job's contract: an id is a non-empty string. Everything else
    (missing, ``null``, ``""``, numbers, booleans, lists, objects) is malformed.
    """
    return isinstance(value, str) and value != ""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to generate.

    :param count: total number of records, malformed included.
    :param duplicate_ratio: share of records that repeat an earlier valid record;
        exactly ``round(count * duplicate_ratio)`` of them.
    :param malformed_ratio: share of malformed records; exactly
        ``round(count * malformed_ratio)`` of them.
    :param seed: seed of the generator; same spec, same bytes.
    :param id_field: JSON field that carries the id; a dotted path
        (``"meta.msg_id"``) puts it in nested objects.
    :param payload_bytes: approximate size of a valid record, in bytes.
    :param keys: duplicates repeat one of the most recent ``keys`` unique ids
        (the key set a dedup must remember); ``None`` means
        :data:`DEFAULT_DUPLICATE_WINDOW`.
    :param oversize_bytes: an ``oversize`` malformed record is larger than this
        (by a few bytes). The default, 600,000, is over the dedup job's default
        ``max_record_bytes`` (512 KiB), and both the record and its base64 dead
        letter (~800 KB) stay under Kafka's default ``max.message.bytes`` (1,048,588).
    :param oversize_every: one malformed record in this many is ``oversize``
        (index ``oversize_every // 2``, then every ``oversize_every``); 0 turns
        oversize records off. Kept rare because each one costs over half a megabyte.
    :raises ValueError: on a negative count, a ratio outside [0, 1], ratios
        adding up to more than the count, or duplicates with no unique record
        to repeat.
    """

    count: int
    duplicate_ratio: float
    malformed_ratio: float
    seed: int
    id_field: str = "id"
    payload_bytes: int = 200
    keys: int | None = None
    oversize_bytes: int = 600_000
    oversize_every: int = 100

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        for name in ("duplicate_ratio", "malformed_ratio"):
            ratio = getattr(self, name)
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {ratio}")
        if self.duplicates + self.malformed > self.count:
            raise ValueError(
                f"{self.duplicates} duplicates + {self.malformed} malformed records exceed "
                f"count={self.count}: lower duplicate_ratio or malformed_ratio"
            )
        if self.duplicates > 0 and self.uniques == 0:
            raise ValueError(
                f"{self.duplicates} duplicates but no unique record for them to repeat: "
                "lower duplicate_ratio or malformed_ratio"
            )
        if not self.id_field or "" in self.id_field.split("."):
            raise ValueError(f"id_field must be a non-empty dotted path, got {self.id_field!r}")
        if self.keys is not None and self.keys < 1:
            raise ValueError(f"keys must be >= 1 (or None), got {self.keys}")
        if self.payload_bytes < 0 or self.oversize_bytes < 0 or self.oversize_every < 0:
            raise ValueError("payload_bytes, oversize_bytes and oversize_every must be >= 0")

    @property
    def malformed(self) -> int:
        """Exact number of malformed records."""
        return round(self.count * self.malformed_ratio)

    @property
    def duplicates(self) -> int:
        """Exact number of duplicate records."""
        return round(self.count * self.duplicate_ratio)

    @property
    def uniques(self) -> int:
        """Exact number of unique valid records (first occurrences)."""
        return self.count - self.malformed - self.duplicates

    @property
    def oversize(self) -> int:
        """Exact number of ``oversize`` malformed records."""
        return sum(1 for i in range(self.malformed) if self._is_oversize(i))

    @property
    def duplicate_window(self) -> int:
        """How many recent unique ids a duplicate may repeat."""
        return self.keys if self.keys is not None else DEFAULT_DUPLICATE_WINDOW

    def _is_oversize(self, malformed_index: int) -> bool:
        every = self.oversize_every
        return every > 0 and malformed_index % every == every // 2

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (round-trips through ``WorkloadSpec(**d)``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One record of a workload.

    :param value: the record's bytes, as written to Kafka.
    :param kind: ``unique`` (first occurrence of an id), ``duplicate`` (byte-identical
        repeat of an earlier unique record) or ``malformed``.
    :param ident: the id of a valid record; ``None`` for a malformed one.
    :param malformed_reason: one of :data:`MALFORMED_REASONS` for a malformed
        record, else ``None``.
    """

    value: bytes
    kind: Kind
    ident: str | None = None
    malformed_reason: str | None = None


def generate(spec: WorkloadSpec) -> Iterator[WorkItem]:
    """Yield the records of ``spec``, lazily and deterministically.

    Guarantees: exactly ``spec.count`` items, of which ``spec.malformed`` are
    malformed, ``spec.duplicates`` are duplicates and the rest unique; every
    duplicate repeats, byte for byte, a unique record yielded earlier (one of
    the last ``spec.duplicate_window`` unique ones); kinds are interleaved
    uniformly at random except that no duplicate precedes the first unique.
    Memory is bounded by the duplicate window, not by ``count``.
    """
    rng = random.Random(spec.seed)
    # A seeded block of filler characters; payloads are slices of it, which is
    # deterministic and much cheaper than drawing every character.
    filler = "".join(rng.choices(string.ascii_letters + string.digits, k=_FILLER_LEN))
    window = spec.duplicate_window
    recent: list[tuple[str, bytes]] = []  # ring buffer of the last `window` unique records
    left = {"unique": spec.uniques, "duplicate": spec.duplicates, "malformed": spec.malformed}
    n_unique = n_malformed = 0
    for seq in range(spec.count):
        kind = _pick_kind(rng, left, allow_duplicate=n_unique > 0)
        left[kind] -= 1
        if kind == "unique":
            n_unique += 1
            ident = f"m-{n_unique:08d}"
            value = _valid_record(spec, ident, seq, filler, rng)
            if len(recent) < window:
                recent.append((ident, value))
            else:
                recent[(n_unique - 1) % window] = (ident, value)
            yield WorkItem(value, "unique", ident)
        elif kind == "duplicate":
            ident, value = recent[rng.randrange(len(recent))]
            yield WorkItem(value, "duplicate", ident)
        else:
            reason = (
                "oversize"
                if spec._is_oversize(n_malformed)
                else _ROTATING_REASONS[n_malformed % len(_ROTATING_REASONS)]
            )
            value = _malformed_record(spec, reason, seq, n_malformed, filler)
            n_malformed += 1
            yield WorkItem(value, "malformed", None, reason)


def _pick_kind(rng: random.Random, left: dict[str, int], *, allow_duplicate: bool) -> Kind:
    # Sequential sampling without replacement: each remaining record is equally
    # likely to come next, which gives exact counts with O(1) memory.
    dup = left["duplicate"] if allow_duplicate else 0
    r = rng.randrange(left["unique"] + left["malformed"] + dup)
    if r < left["unique"]:
        return "unique"
    if r < left["unique"] + left["malformed"]:
        return "malformed"
    return "duplicate"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _with_field(path: str, value: object) -> dict[str, object]:
    """``{"a": {"b": value}}`` for the dotted path ``"a.b"``."""
    head, _, rest = path.partition(".")
    return {head: _with_field(rest, value) if rest else value}


def _fill(filler: str, start: int, n: int) -> str:
    start %= _FILLER_LEN
    out = filler[start : start + n]
    while len(out) < n:
        out += filler[: n - len(out)]
    return out


def _valid_record(
    spec: WorkloadSpec, ident: str, seq: int, filler: str, rng: random.Random
) -> bytes:
    record: dict[str, object] = {
        **_with_field(spec.id_field, ident),
        "seq": seq,
        "ts": seq * _TS_STEP_MS,
    }
    record["payload"] = ""
    pad = max(0, spec.payload_bytes - len(_dumps(record)))
    record["payload"] = _fill(filler, rng.randrange(_FILLER_LEN), pad)
    return _dumps(record)


def _malformed_record(spec: WorkloadSpec, reason: str, seq: int, n: int, filler: str) -> bytes:
    """The ``n``-th malformed record; ``seq`` keeps each value distinct."""
    fid = spec.id_field
    base: dict[str, object] = {"seq": seq, "ts": seq * _TS_STEP_MS}
    variant = n // len(_ROTATING_REASONS)
    if reason == "not_json":
        return [
            b"{not json " + str(seq).encode(),
            b'{"' + fid.encode() + b'": "m-' + str(seq).encode() + b'", "seq": ',  # truncated
            b"\xff\xfe{\x80 invalid utf-8 " + str(seq).encode(),
        ][variant % 3]
    if reason == "not_object":
        return [_dumps([1, 2, seq]), _dumps(f"str-{seq}"), _dumps(seq)][variant % 3]
    if reason == "missing_field":
        # For a dotted id field, the parent object is there and only the leaf is absent.
        parent = fid.rpartition(".")[0]
        return _dumps({**_with_field(parent, {}), **base} if parent else base)
    if reason == "null_field":
        return _dumps({**_with_field(fid, None), **base})
    if reason == "empty_field":
        return _dumps({**_with_field(fid, ""), **base})
    if reason == "wrong_type":
        # Never an integer: a job may accept integer ids; a boolean is never one.
        wrong: list[object] = [[f"m-{seq:08d}"], seq + 0.5, True, {"v": seq}]
        return _dumps({**_with_field(fid, wrong[variant % len(wrong)]), **base})
    if reason == "oversize":
        # A well-formed record with a fresh, never-expected id: only its size is wrong.
        record: dict[str, object] = {
            **_with_field(fid, f"oversize-{seq:08d}"),
            **base,
            "payload": "",
        }
        pad = spec.oversize_bytes + 1 - len(_dumps(record))
        record["payload"] = _fill(filler, seq, max(0, pad))
        return _dumps(record)
    raise AssertionError(f"unknown malformed reason {reason!r}")


@dataclass(slots=True)
class Expectation:
    """What an exactly-once dedup job must produce from a workload.

    :param unique_ids: ids of the valid records, each once, in first-seen order:
        the output topic must hold exactly these, once each.
    :param duplicates: number of duplicate records in the input.
    :param malformed: number of malformed records in the input.
    :param malformed_values: the malformed records' bytes, in input order: the
        dead-letter topic must hold exactly these (as a multiset), once each.
    :param malformed_reasons: the reason of each malformed value (same order).
    :param spec: the workload spec as a dict, for provenance; may be empty.
    :param value_format: how the records were written: ``json``, or ``avro``
        (Confluent-framed, :mod:`onceflow.testing.avro_workload`).
    """

    unique_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    malformed: int = 0
    malformed_values: list[bytes] = field(default_factory=list)
    malformed_reasons: list[str] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    value_format: str = "json"

    @property
    def total(self) -> int:
        """Number of input records the expectation was built from."""
        return len(self.unique_ids) + self.duplicates + self.malformed

    def add(self, item: WorkItem) -> None:
        """Account for one generated record (call in generation order)."""
        if item.kind == "unique":
            assert item.ident is not None
            self.unique_ids.append(item.ident)
        elif item.kind == "duplicate":
            self.duplicates += 1
        else:
            self.malformed += 1
            self.malformed_values.append(item.value)
            self.malformed_reasons.append(item.malformed_reason or "unknown")

    @classmethod
    def collect(cls, items: Iterable[WorkItem], spec: WorkloadSpec | None = None) -> Expectation:
        """Build the expectation of a stream of items."""
        exp = cls(spec=spec.to_dict() if spec is not None else {})
        for item in items:
            exp.add(item)
        return exp

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; bytes are base64 (standard alphabet, padded)."""
        return {
            "format": _FORMAT,
            "spec": self.spec,
            "value_format": self.value_format,
            "unique_ids": self.unique_ids,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
            "malformed_values": [
                {"reason": reason, "value_b64": base64.b64encode(value).decode("ascii")}
                for value, reason in zip(self.malformed_values, self.malformed_reasons, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Expectation:
        """Inverse of :meth:`to_dict`.

        :raises ValueError: if ``data`` is not an expectation of a known format.
        """
        if data.get("format") != _FORMAT:
            raise ValueError(
                f"not an onceflow expectation (format={data.get('format')!r}, "
                f"expected {_FORMAT!r}): pass the file written by `onceflow produce --expect`"
            )
        entries = data["malformed_values"]
        exp = cls(
            unique_ids=list(data["unique_ids"]),
            duplicates=int(data["duplicates"]),
            malformed=int(data["malformed"]),
            malformed_values=[base64.b64decode(e["value_b64"]) for e in entries],
            malformed_reasons=[str(e.get("reason", "unknown")) for e in entries],
            spec=dict(data.get("spec") or {}),
            value_format=str(data.get("value_format") or "json"),  # absent before Avro
        )
        if len(exp.malformed_values) != exp.malformed:
            raise ValueError(
                f"corrupt expectation: malformed={exp.malformed} but "
                f"{len(exp.malformed_values)} malformed values are listed"
            )
        return exp

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the expectation as JSON (gzip-compressed if the name ends in ``.gz``).

        The write is atomic (temporary file, then rename): a reader never sees a
        half-written expectation.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")
        if path.suffix == ".gz":
            data = gzip.compress(data, compresslevel=5, mtime=0)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
        log.info(
            "expectation saved to %s (%d unique ids, %d duplicates, %d malformed)",
            path,
            len(self.unique_ids),
            self.duplicates,
            self.malformed,
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Expectation:
        """Read an expectation written by :meth:`save`.

        :raises FileNotFoundError: if ``path`` does not exist.
        :raises ValueError: if the file is not an expectation.
        """
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return cls.from_dict(json.loads(raw))


def expectation_for(spec: WorkloadSpec) -> Expectation:
    """The expectation of ``spec``, without keeping the records."""
    return Expectation.collect(generate(spec), spec)

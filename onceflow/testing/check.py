"""Check a job's output against an :class:`~onceflow.testing.workload.Expectation`.

``onceflow check`` drains the output topic (and optionally the dead-letter
topic) with a ``read_committed`` consumer and compares, as multisets, what it
read with what an exactly-once dedup job must have written: every expected id
exactly once, every malformed input exactly once in the DLQ, nothing else.

Avro outputs (``--format avro``, the default when the expectation was produced with
``onceflow produce --format avro``) are decoded by the schema id in their framing, with
the writer schema fetched from the registry; a record that does not decode counts as
invalid with the decoder's reason. Dead letters are JSON whatever the input's format.

The comparison is pure (:func:`compare`, :func:`compare_dead_letters`,
:func:`check_output`) and separate from the reading
(:func:`onceflow.testing.drain.read_committed`), so it is unit-tested without a
broker.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from kafka.errors import KafkaError

from onceflow.avro.wire import AvroDecoder, DecodeFailure
from onceflow.errors import OnceflowError
from onceflow.testing.drain import ConsumedRecord, read_committed
from onceflow.testing.produce import DEFAULT_BOOTSTRAP, VALUE_FORMATS, default_registry_url
from onceflow.testing.workload import Expectation, valid_id

__all__ = [
    "CheckReport",
    "IdOf",
    "add_arguments",
    "avro_id_of",
    "check_output",
    "compare",
    "compare_dead_letters",
    "run",
]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

_EXAMPLES = 5  # examples kept per anomaly
_PREVIEW = 60  # bytes of a value shown in an example
_INVALID = {"output": "without a valid id", "dead letters": "not dead letters"}

IdOf = Callable[[bytes | None, str], tuple[str | None, str]]
"""``id_of(value, id_field)`` -> ``(id, "")`` or ``(None, why not)``."""


# ------------------------------------------------------------------ comparing


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Result of comparing what was read with what was expected (as multisets).

    Invariants: ``seen == (expected - missing) + duplicated + unexpected + invalid``
    and ``unique`` counts distinct keys among the valid records seen.

    :param expected: number of expected records.
    :param seen: number of records read (valid or not).
    :param unique: distinct keys among the valid records read.
    :param duplicated: extra copies: records read beyond the expected count of
        their key (beyond one for an unexpected key).
    :param missing: expected records never read.
    :param unexpected: distinct keys read that were not expected at all.
    :param invalid: records read whose key could not be extracted (for the
        output: no valid id; for the DLQ: no ``original_b64``).
    :param name: what was checked ("output", "dead letters").
    """

    expected: int
    seen: int
    unique: int
    duplicated: int
    missing: int
    unexpected: int
    invalid: int = 0
    duplicated_examples: tuple[str, ...] = ()
    missing_examples: tuple[str, ...] = ()
    unexpected_examples: tuple[str, ...] = ()
    invalid_examples: tuple[str, ...] = ()
    name: str = "output"

    @property
    def ok(self) -> bool:
        """Exactly once: nothing duplicated, missing, unexpected or invalid."""
        return not (self.duplicated or self.missing or self.unexpected or self.invalid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ``ok`` included."""
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_json(self) -> str:
        """The report as a JSON object."""
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """A short human summary, one line when OK."""
        head = (
            f"{self.name}: {'OK' if self.ok else 'FAILED'} -- expected {self.expected}, "
            f"read {self.seen} ({self.unique} distinct)"
        )
        lines = [head]
        for label, n, what, examples in (
            ("duplicated", self.duplicated, "extra copies", self.duplicated_examples),
            ("missing", self.missing, "never read", self.missing_examples),
            ("unexpected", self.unexpected, "not expected", self.unexpected_examples),
            ("invalid", self.invalid, _INVALID.get(self.name, "unusable"), self.invalid_examples),
        ):
            if n:
                eg = f", e.g. {'; '.join(examples)}" if examples else ""
                lines.append(f"  {label + ':':<12}{n} {what}{eg}")
        return "\n".join(lines)


def _compare(
    expected: Iterable[K],
    seen: Iterable[K],
    show: Callable[[K], str],
    name: str,
) -> CheckReport:
    exp = Counter(expected)  # Counter keeps first-insertion order: examples are stable
    got = Counter(seen)
    missing = duplicated = unexpected = 0
    missing_ex: list[str] = []
    dup_ex: list[str] = []
    unexp_ex: list[str] = []
    for key, e in exp.items():
        s = got.get(key, 0)
        if s < e:
            missing += e - s
            if len(missing_ex) < _EXAMPLES:
                missing_ex.append(show(key) if e - s == 1 else f"{show(key)} x{e - s}")
    for key, s in got.items():
        e = exp.get(key, 0)
        if e == 0:
            unexpected += 1
            duplicated += s - 1
            if len(unexp_ex) < _EXAMPLES:
                unexp_ex.append(show(key) if s == 1 else f"{show(key)} x{s}")
        elif s > e:
            duplicated += s - e
            if len(dup_ex) < _EXAMPLES:
                dup_ex.append(f"{show(key)} x{s}")
    return CheckReport(
        expected=sum(exp.values()),
        seen=sum(got.values()),
        unique=len(got),
        duplicated=duplicated,
        missing=missing,
        unexpected=unexpected,
        duplicated_examples=tuple(dup_ex),
        missing_examples=tuple(missing_ex),
        unexpected_examples=tuple(unexp_ex),
        name=name,
    )


def compare(expected_ids: Iterable[str], seen_ids: Iterable[str]) -> CheckReport:
    """Compare the ids read with the ids expected, as multisets.

    Pure. An id expected once and read three times counts 2 ``duplicated``;
    an id never read counts 1 ``missing``; an id read but not expected counts
    1 ``unexpected`` (and its extra copies ``duplicated``).
    """
    return _compare(expected_ids, seen_ids, str, "output")


def _preview(value: bytes | None) -> str:
    if value is None:
        return "null value"
    text = repr(value[:_PREVIEW])
    return text + ("..." if len(value) > _PREVIEW else "") + f" ({len(value)} bytes)"


def _id_of(value: bytes | None, id_field: str) -> tuple[str | None, str]:
    """The id of an output record, or ``(None, why not)``.

    The reasons are those of :mod:`onceflow.operators.records`; ``id_field`` may be a
    dotted path into nested objects.
    """
    if value is None:
        return None, "not_json (null value)"
    try:
        node: object = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None, "not_json"
    return _id_in(node, id_field)


def _id_in(node: object, id_field: str) -> tuple[str | None, str]:
    """The id at the dotted path ``id_field`` of a decoded record, or why not."""
    if not isinstance(node, dict):
        return None, f"not_object ({type(node).__name__})"
    for part in id_field.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, f"missing_field {id_field!r}"
        node = node[part]
    if node is None:
        return None, f"null_field {id_field!r}"
    if node == "":
        return None, f"empty_field {id_field!r}"
    if not valid_id(node):
        return None, f"wrong_type {id_field}={node!r}"
    assert isinstance(node, str)
    return node, ""


def avro_id_of(decoder: AvroDecoder) -> IdOf:
    """An ``id_of`` for :func:`check_output` over Confluent-framed Avro records.

    A record that does not decode is invalid with the decoder's reason
    (:data:`onceflow.avro.wire.DECODE_REASONS`); a registry that cannot answer raises
    :class:`~onceflow.avro.registry.RegistryUnavailable` (no verdict).
    """

    def id_of(value: bytes | None, id_field: str) -> tuple[str | None, str]:
        decoded = decoder.decode(value)
        if isinstance(decoded, DecodeFailure):
            return None, f"{decoded.reason} ({decoded.detail})"
        return _id_in(decoded.record, id_field)

    return id_of


def check_output(
    expected_ids: Iterable[str],
    records: Iterable[ConsumedRecord],
    id_field: str = "id",
    id_of: IdOf = _id_of,
) -> CheckReport:
    """Check a dedup job's output records: each expected id once, nothing else.

    Pure (given a pure ``id_of``). Records without a valid id (not JSON, not an
    object, id missing, null, empty or not a string) count as ``invalid``;
    ``id_field`` may be a dotted path (``meta.msg_id``).

    :param id_of: how a value's id is found: JSON by default, :func:`avro_id_of`
        for Avro.
    """
    ids: list[str] = []
    invalid = 0
    invalid_ex: list[str] = []
    for rec in records:
        ident, why = id_of(rec.value, id_field)
        if ident is not None:
            ids.append(ident)
            continue
        invalid += 1
        if len(invalid_ex) < _EXAMPLES:
            invalid_ex.append(f"{rec.partition}@{rec.offset} {why}: {_preview(rec.value)}")
    report = compare(expected_ids, ids)
    return _with_invalid(report, invalid, invalid_ex)


def _with_invalid(report: CheckReport, invalid: int, examples: list[str]) -> CheckReport:
    return replace(
        report, seen=report.seen + invalid, invalid=invalid, invalid_examples=tuple(examples)
    )


_NULL_ORIGINAL = b"null"  # key of a dead letter for a null value; never a SHA-256 digest


def _dead_letter_key(value: bytes | None) -> tuple[bytes | None, bytes | None, str]:
    """``(key, original, why not)`` of a DLQ record; the key is the original's SHA-256."""
    if value is None:
        return None, None, "null value"
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None, None, "not JSON"
    if not isinstance(obj, dict) or "original_b64" not in obj:
        return None, None, "no original_b64"
    b64 = obj["original_b64"]
    if b64 is None:  # the rejected record had a null value
        return _NULL_ORIGINAL, None, ""
    if not isinstance(b64, str):
        return None, None, "original_b64 is not a string"
    try:
        original = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None, None, "original_b64 is not base64"
    if obj.get("truncated") is True:
        # Too large for the DLQ topic: a prefix, with the whole input's digest.
        digest = obj.get("original_sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None, None, "truncated without original_sha256"
        return bytes.fromhex(digest), original, ""
    return hashlib.sha256(original).digest(), original, ""


def compare_dead_letters(
    expected_values: list[bytes], dlq_records: Iterable[ConsumedRecord | bytes]
) -> CheckReport:
    """Check the dead-letter topic: each malformed input exactly once, nothing else.

    Pure. Each DLQ record value must be a JSON object with ``original_b64``
    (base64 of the original record's bytes, ``null`` for a null value: the
    format of :func:`onceflow.operators.records.dead_letter`); originals are matched by
    content, as a multiset. A DLQ record without it counts as ``invalid``.

    :param expected_values: the malformed inputs (``Expectation.malformed_values``).
    :param dlq_records: the DLQ records, or just their values.
    """
    names: dict[bytes, bytes] = {}
    expected: list[bytes] = []
    for v in expected_values:
        digest = hashlib.sha256(v).digest()
        names.setdefault(digest, v)
        expected.append(digest)
    seen: list[bytes] = []
    invalid = 0
    invalid_ex: list[str] = []
    for rec in dlq_records:
        value = rec if isinstance(rec, bytes) else rec.value
        key, original, why = _dead_letter_key(value)
        if key is None:
            invalid += 1
            if len(invalid_ex) < _EXAMPLES:
                where = "" if isinstance(rec, bytes) else f"{rec.partition}@{rec.offset} "
                invalid_ex.append(f"{where}{why}: {_preview(value)}")
            continue
        if original is not None:
            names.setdefault(key, original)
        seen.append(key)

    def show(key: bytes) -> str:
        return _preview(names.get(key))  # None (a null original) shows as "null value"

    report = _compare(expected, seen, show, "dead letters")
    return _with_invalid(report, invalid, invalid_ex)


# ------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``onceflow check`` options to ``parser``."""
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument("--topic", required=True, help="output topic of the job")
    parser.add_argument(
        "--expect",
        type=Path,
        required=True,
        metavar="FILE",
        help="expectation written by `onceflow produce --expect`",
    )
    parser.add_argument(
        "--dlq-topic",
        default=None,
        help="also check this dead-letter topic against the expected malformed records",
    )
    parser.add_argument("--id-field", default="id", help="field of the id (%(default)s)")
    parser.add_argument(
        "--format",
        choices=VALUE_FORMATS,
        default=None,
        help="encoding of the output records (default: the expectation's, "
        "`onceflow produce --format`)",
    )
    parser.add_argument(
        "--registry-url",
        default=None,
        help="Avro: the schema registry's Confluent-compatible API (default: "
        "$ONCEFLOW_REGISTRY_URL or the local stack's)",
    )
    parser.add_argument(
        "--quiet-ms",
        type=int,
        default=3000,
        help="drained once nothing new arrived for this long (%(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up reading a topic after this long (%(default)s)",
    )
    parser.add_argument(
        "--isolation",
        choices=("read_committed", "read_uncommitted"),
        default="read_committed",
        help="consumer isolation level (%(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write reports here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``onceflow check``.

    :returns: 0 if every check passed, 1 if any anomaly was found.
    :raises OnceflowError: (exit 2 in the CLI) if the check could not be made:
        expectation unreadable, broker unreachable, topic missing, not drained in time.
    """
    try:
        exp = Expectation.load(args.expect)
    except (OSError, ValueError, KeyError) as exc:
        raise OnceflowError(
            f"cannot read the expectation {args.expect}: {exc}; pass the file written by "
            "`onceflow produce --expect`"
        ) from exc
    reports: dict[str, CheckReport] = {}
    read: Mapping[str, Any] = {
        "quiet_ms": args.quiet_ms,
        "timeout_s": args.timeout,
        "progress": not args.no_progress,
        "isolation_level": args.isolation,
    }
    value_format = args.format or exp.value_format
    id_of: IdOf = _id_of
    if value_format == "avro":
        from onceflow.avro.registry import SchemaRegistry

        registry = SchemaRegistry(args.registry_url or default_registry_url())
        id_of = avro_id_of(AvroDecoder.from_registry(registry))
    try:
        out = read_committed(args.bootstrap, args.topic, **read)
        reports["output"] = check_output(exp.unique_ids, out, args.id_field, id_of)
        if args.dlq_topic:
            dlq = read_committed(args.bootstrap, args.dlq_topic, **read)
            reports["dead_letters"] = compare_dead_letters(exp.malformed_values, dlq)
    except KafkaError as exc:
        raise OnceflowError(
            f"reading from {args.bootstrap} failed: {exc!r}; is the broker running "
            "(`onceflow stack up`) and --bootstrap / $KAFKA_BOOTSTRAP right?"
        ) from exc
    ok = all(r.ok for r in reports.values())
    for report in reports.values():
        print(report.render())
    if args.json is not None:
        doc = {
            "ok": ok,
            "isolation_level": args.isolation,
            "topics": {"output": args.topic, "dead_letters": args.dlq_topic},
            "reports": {k: r.to_dict() for k, r in reports.items()},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if ok else 1

"""Parse and validate raw Kafka record values; build dead-letter records.

Every record a job reads goes through :func:`parse_object` first. The outcome is
either :class:`Parsed` or :class:`Rejected`; nothing in this module raises on
bad *input* (arbitrary bytes, hostile JSON), only on bad *arguments* (a
programming error). That matters for exactly-once: an exception inside an
operator fails the job, Flink restores the last checkpoint, replays the same
record and fails again, a restart loop on a poison record. A rejected record is
instead routed to a dead-letter topic (DLQ) through the same transactional sink,
so it is written exactly once together with the checkpoint that consumed it.

Rejection reasons are stable, machine-readable strings (the ``REASON`` constants
below, all listed in :data:`REASONS`); dashboards and DLQ consumers may match on
them. The human-readable ``detail`` may change between releases.

JSON is parsed strictly: ``NaN``, ``Infinity`` and numbers that overflow a
double (``1e400``) are rejected as :data:`NOT_JSON`, because they are not JSON
(RFC 8259) and a Java consumer of the output would refuse them. An object with a
repeated name keeps the last value (Python's ``json`` behaviour).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypedDict

__all__ = [
    "AMBIGUOUS_KEY",
    "BAD_OP",
    "DEAD_LETTER_TEXT_LIMIT",
    "DEFAULT_MAX_DEPTH",
    "DEAD_LETTER_MAX_BYTES",
    "DEAD_LETTER_MIN_BYTES",
    "EMPTY_FIELD",
    "INVALID_UNICODE",
    "MISSING",
    "MISSING_FIELD",
    "NOT_JSON",
    "NOT_OBJECT",
    "NULL_FIELD",
    "OUT_OF_RANGE",
    "OVERSIZE",
    "REASONS",
    "TOO_DEEP",
    "WRONG_TYPE",
    "DeadLetter",
    "Parsed",
    "Rejected",
    "canonical_json",
    "dead_letter",
    "dead_letter_record",
    "get_path",
    "is_unicode",
    "parse_dead_letter",
    "parse_object",
    "record_dead_letter",
    "record_text",
    "require_field",
    "split_path",
    "sql_json_path",
    "sql_unicode_safe",
    "hash_of_canonical",
    "stable_hash",
]

_log = logging.getLogger(__name__)

NOT_JSON: Final = "not_json"
"""The value is ``None``, not UTF-8, or not strict JSON."""
NOT_OBJECT: Final = "not_object"
"""The value is JSON but not an object (an array, a string, a number...)."""
OVERSIZE: Final = "oversize"
"""The value is longer than ``max_bytes``; checked before any decoding."""
TOO_DEEP: Final = "too_deep"
"""The JSON nests arrays/objects deeper than ``max_depth``."""
MISSING_FIELD: Final = "missing_field"
"""A required field (dotted path) is absent."""
NULL_FIELD: Final = "null_field"
"""A required field is JSON ``null``."""
EMPTY_FIELD: Final = "empty_field"
"""A required string field is the empty string."""
WRONG_TYPE: Final = "wrong_type"
"""A field has a JSON type that is not allowed (``true`` is never an integer)."""
OUT_OF_RANGE: Final = "out_of_range"
"""An integer field has the right type but an invalid value (negative version...)."""
BAD_OP: Final = "bad_op"
"""A change event's ``op`` is a string but not a known operation."""
AMBIGUOUS_KEY: Final = "ambiguous_key"
"""The record was keyed (in the JVM) by another value of its key field than the
one parsed in Python: duplicate member names, or a number the JVM renders
differently. It touches no state."""
INVALID_UNICODE: Final = "invalid_unicode"
"""An id or key is a JSON string that is not Unicode text: a lone surrogate escape
(``"\\ud800"``) is valid JSON grammar, but no UTF-8 Kafka key, Java string
crossing into Python or state key can hold it."""

REASONS: Final = (
    NOT_JSON,
    NOT_OBJECT,
    OVERSIZE,
    TOO_DEEP,
    MISSING_FIELD,
    NULL_FIELD,
    EMPTY_FIELD,
    WRONG_TYPE,
    OUT_OF_RANGE,
    BAD_OP,
    AMBIGUOUS_KEY,
    INVALID_UNICODE,
)
"""Every rejection reason this package emits."""

DEFAULT_MAX_DEPTH: Final = 100
"""Default nesting limit: far above real payloads, far below the recursion limit.

An explicit limit makes acceptance deterministic; without it, whether a deeply
nested record parses (and whether canonical JSON of it can be produced later)
would depend on how deep the Python stack happens to be in the Flink worker.
"""


class _Missing(Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""Returned by :func:`get_path` when the path does not exist (distinct from ``None``)."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A record value that decoded to a JSON object.

    :param value: the decoded object.
    :param size: the length of the raw value in bytes.
    """

    value: dict[str, Any]
    size: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be processed and belongs in the dead-letter topic.

    :param reason: one of :data:`REASONS`; stable, for machines.
    :param detail: what exactly is wrong, for humans; may change between releases.
    """

    reason: str
    detail: str


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity/-Infinity by default; strict JSON does not.
    raise _NonFinite(f"{name} is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 silently becomes inf, which canonical JSON could not write back.
        raise _NonFinite(f"number {text[:40]} overflows a double")
    return value


def _depth_exceeds(value: object, max_depth: int) -> bool:
    # Iterative on purpose: a recursive walk would hit the limit we guard against.
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_object(
    raw: bytes | None, max_bytes: int, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Parsed | Rejected:
    """Decode a Kafka record value into a JSON object.

    Never raises on any ``raw``: every failure is returned as :class:`Rejected`.
    Checks, in order: ``None`` (a Kafka tombstone) -> :data:`NOT_JSON` with
    detail ``"null record value"``; ``len(raw) > max_bytes`` ->
    :data:`OVERSIZE` (before decoding, so an oversized record costs no parsing);
    invalid UTF-8 or invalid/non-strict JSON -> :data:`NOT_JSON`; nesting deeper
    than ``max_depth`` -> :data:`TOO_DEEP`; a JSON value that is not an object
    -> :data:`NOT_OBJECT`.

    :param raw: the record value as read from Kafka.
    :param max_bytes: the largest accepted value in bytes (positive).
    :param max_depth: the deepest accepted nesting of arrays/objects (positive).
    :return: :class:`Parsed` or :class:`Rejected`.
    :raises ValueError: if ``max_bytes`` or ``max_depth`` is not a positive int.
    """
    _check_positive("max_bytes", max_bytes)
    _check_positive("max_depth", max_depth)
    if raw is None:
        return Rejected(NOT_JSON, "null record value")
    size = len(raw)
    if size > max_bytes:
        return Rejected(OVERSIZE, f"record value is {size} bytes, limit is {max_bytes}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(NOT_JSON, f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        return Rejected(TOO_DEEP, "nesting exceeds the JSON parser's recursion limit")
    except _NonFinite as exc:
        return Rejected(NOT_JSON, f"non-finite number: {exc}")
    except json.JSONDecodeError as exc:
        return Rejected(NOT_JSON, f"invalid JSON: {exc.msg} at line {exc.lineno} col {exc.colno}")
    except ValueError as exc:
        # e.g. an integer literal longer than sys.get_int_max_str_digits().
        return Rejected(NOT_JSON, f"invalid JSON: {exc}")
    # Depth cannot exceed the number of opening brackets: most records skip the walk.
    if text.count("{") + text.count("[") > max_depth and _depth_exceeds(value, max_depth):
        return Rejected(TOO_DEEP, f"nesting is deeper than {max_depth}")
    if not isinstance(value, dict):
        return Rejected(NOT_OBJECT, f"expected a JSON object, got {_json_type(value)}")
    return Parsed(value, size)


def split_path(path: str) -> tuple[str, ...]:
    """Split a dotted field path (``"meta.msg_id"``) into its segments.

    Names that contain a dot cannot be addressed; that is a documented limit.

    :param path: a non-empty dotted path without empty segments.
    :return: the segments.
    :raises ValueError: if the path is empty or has an empty segment (``"a..b"``).
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"field path must be a non-empty string, got {path!r}")
    return _segments(path)


@functools.lru_cache(maxsize=1024)
def _segments(path: str) -> tuple[str, ...]:
    # Cached: the operators read the same few paths of every record.
    parts = tuple(path.split("."))
    if any(not p for p in parts):
        raise ValueError(
            f"field path {path!r} has an empty segment; use dotted names like 'meta.msg_id'"
        )
    return parts


_SQL_PATH_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def sql_json_path(path: str) -> str | None:
    """The SQL/JSON path (``$.meta.msg_id``) of a dotted field path, for ``JSON_VALUE``.

    None when a segment has characters that would need escaping inside a JSON
    path in a SQL string literal; callers then read the field in Python.

    :raises ValueError: if ``path`` is malformed (see :func:`split_path`).
    """
    segments = split_path(path)
    if not all(_SQL_PATH_SEGMENT.match(segment) for segment in segments):
        return None
    return "$" + "".join(f".{segment}" for segment in segments)


def sql_unicode_safe(expression: str) -> str:
    """A SQL STRING ``expression`` with each lone surrogate replaced by U+FFFD.

    A JSON escape such as ``"\\ud800"`` is valid grammar, and Flink's JSON
    functions turn it into a Java string holding a lone surrogate. Such a string
    cannot cross into Python (PEMJA decodes it as UTF-16 and fails the task
    before any Python code runs, on every replay: a poison pill), so a key
    computed in the JVM goes through this first. Java's regex engine reads a
    valid surrogate pair as one code point outside the range, so only lone
    halves are replaced. The Python side rejects such records as
    :data:`INVALID_UNICODE` from the raw bytes; they touch no state, so the
    replaced key sharing a key with a real U+FFFD id is harmless.
    """
    return f"REGEXP_REPLACE({expression}, '[\\x{{D800}}-\\x{{DFFF}}]', '\ufffd')"


def get_path(obj: dict[str, Any], path: str) -> object:
    """Follow a dotted path through nested objects.

    :param obj: a decoded JSON object.
    :param path: a dotted path such as ``"meta.msg_id"``.
    :return: the value (which may be ``None`` for JSON ``null``), or
        :data:`MISSING` if a segment is absent or an intermediate value is not
        an object (arrays are not indexed).
    :raises ValueError: if ``path`` is malformed (see :func:`split_path`).
    """
    node: object = obj
    for part in split_path(path):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def require_field(obj: dict[str, Any], path: str, types: tuple[type, ...]) -> object | Rejected:
    """Fetch a required field and check its type.

    Checks, in order: absent -> :data:`MISSING_FIELD`; ``null`` ->
    :data:`NULL_FIELD`; a type not in ``types`` -> :data:`WRONG_TYPE`; the
    empty string (when ``str`` is allowed) -> :data:`EMPTY_FIELD`. A JSON
    boolean is :data:`WRONG_TYPE` unless ``bool`` itself is in ``types``
    (Python's ``bool`` subclasses ``int``, JSON's ``true`` is not a number), and
    an ``int`` is not accepted where only ``float`` is listed.

    :param obj: a decoded JSON object.
    :param path: a dotted path.
    :param types: the accepted Python types (``str``, ``int``, ``float``,
        ``bool``, ``dict``, ``list``).
    :return: the value, or :class:`Rejected`.
    :raises ValueError: if ``path`` is malformed or ``types`` is empty.
    """
    if not types:
        raise ValueError("require_field needs at least one accepted type")
    value = get_path(obj, path)
    if value is MISSING:
        return Rejected(MISSING_FIELD, f"field {path!r} is absent")
    if value is None:
        return Rejected(NULL_FIELD, f"field {path!r} is null")
    # A bool passes only if bool itself is allowed, never as an int.
    ok = bool in types if isinstance(value, bool) else isinstance(value, types)
    if not ok:
        allowed = " or ".join(_type_name(t) for t in types)
        return Rejected(WRONG_TYPE, f"field {path!r} is {_json_type(value)}, expected {allowed}")
    if value == "":
        return Rejected(EMPTY_FIELD, f"field {path!r} is an empty string")
    return value


def canonical_json(value: object) -> bytes:
    """Serialise a JSON value canonically: sorted keys, no spaces, UTF-8.

    Equal JSON documents (up to object member order) give equal bytes. Numbers
    keep their Python type: ``1`` and ``1.0`` serialise differently. Lone
    surrogates (legal as ``\\ud800`` escapes in JSON text) are encoded with
    ``surrogatepass`` so hashing never fails on them.

    :param value: a JSON-compatible value.
    :return: the canonical bytes.
    :raises ValueError: on NaN/infinity (never produced by :func:`parse_object`).
    :raises TypeError: on values that are not JSON-compatible.
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8", "surrogatepass")


def stable_hash(value: object) -> str:
    """Return a stable 128-bit hash (32 hex chars) of ``value``'s canonical JSON.

    Stable across processes, restarts and Python versions (SHA-256 of
    :func:`canonical_json`), unlike ``hash()``; safe to keep in checkpointed state.

    :param value: a JSON-compatible value.
    :return: 32 lowercase hex characters.
    """
    return hash_of_canonical(canonical_json(value))


def hash_of_canonical(canonical: bytes) -> str:
    """:func:`stable_hash` of a value whose :func:`canonical_json` is ``canonical``
    (for a caller that already holds those bytes)."""
    return hashlib.sha256(canonical).hexdigest()[:32]


class _Source(TypedDict):
    topic: str | None
    partition: int | None
    offset: int | None


class DeadLetter(TypedDict):
    """A decoded dead-letter record (see :func:`parse_dead_letter`)."""

    reason: str
    detail: str
    source: _Source
    original_bytes: bytes | None
    original: str | None
    truncated: bool
    original_size: int | None
    original_sha256: str | None


def dead_letter(
    raw: bytes | None,
    reason: str,
    detail: str,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    *,
    include_text: bool = True,
    max_bytes: int | None = None,
) -> bytes:
    """Build the value of a dead-letter record for a rejected input record.

    The result is a UTF-8 JSON object::

        {"reason": ..., "detail": ..., "source": {"topic", "partition", "offset"},
         "original": <text, only if the input is valid UTF-8>,
         "original_b64": <base64 of the input bytes, null for a null value>}

    ``original_b64`` carries the input exactly, even when it is not UTF-8; the
    ``original`` text is a convenience for people reading the topic. The output
    is deterministic (same input -> same bytes), so a replay after failover
    writes an identical record. Size: about 1.33x the input, 2.33x with the
    text; pass ``include_text=False`` to keep only the base64 copy.

    With ``max_bytes``, a dead letter that would be larger keeps only a prefix of
    the input (no text copy) and says so: ``"truncated": true``,
    ``"original_size"`` (bytes) and ``"original_sha256"`` (hex, of the whole
    input), so the record is still written (a record over the DLQ topic's
    ``max.message.bytes`` would fail the sink, and the job with it) and can be
    matched with its source, which ``source`` locates exactly.

    :param raw: the rejected record value (``None`` for a Kafka null value).
    :param reason: the rejection reason, one of :data:`REASONS`.
    :param detail: the human-readable detail.
    :param topic: the source topic.
    :param partition: the source partition.
    :param offset: the source offset.
    :param include_text: whether to add ``original`` when the input is UTF-8.
    :param max_bytes: the largest dead letter to build (at least 1024), or None.
    :return: the dead-letter record value.
    :raises ValueError: if ``max_bytes`` is below 1024.
    """
    if max_bytes is not None and max_bytes < DEAD_LETTER_MIN_BYTES:
        raise ValueError(f"max_bytes must be at least {DEAD_LETTER_MIN_BYTES}, got {max_bytes}")
    doc: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
    }
    if raw is not None and include_text:
        # Not text: original_b64 alone carries it.
        with contextlib.suppress(UnicodeDecodeError):
            doc["original"] = bytes(raw).decode("utf-8")
    doc["original_b64"] = None if raw is None else base64.b64encode(raw).decode("ascii")
    value = _dead_letter_json(doc, topic, partition, offset)
    if raw is None or max_bytes is None or len(value) <= max_bytes:
        return value
    return _truncated_dead_letter(bytes(raw), doc, max_bytes, topic, partition, offset)


DEAD_LETTER_MIN_BYTES: Final = 1024


def _dead_letter_json(
    doc: dict[str, Any], topic: str | None, partition: int | None, offset: int | None
) -> bytes:
    try:
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate in a caller's detail cannot be UTF-8; escape everything.
        _log.debug("dead letter for %s/%s@%s needs ASCII escaping", topic, partition, offset)
        return json.dumps(doc, ensure_ascii=True).encode("ascii")


def _truncated_dead_letter(
    raw: bytes,
    doc: dict[str, Any],
    max_bytes: int,
    topic: str | None,
    partition: int | None,
    offset: int | None,
) -> bytes:
    """The dead letter of ``raw`` with only as much of it as fits ``max_bytes``."""
    doc.pop("original", None)
    doc["detail"] = str(doc["detail"])[:500]
    doc["truncated"] = True
    doc["original_size"] = len(raw)
    doc["original_sha256"] = hashlib.sha256(raw).hexdigest()
    doc["original_b64"] = ""
    room = max_bytes - len(_dead_letter_json(doc, topic, partition, offset))
    # base64 writes 4 characters per 3 bytes: keep whole 3-byte groups that fit.
    doc["original_b64"] = base64.b64encode(raw[: max(room, 0) // 4 * 3]).decode("ascii")
    return _dead_letter_json(doc, topic, partition, offset)


DEAD_LETTER_TEXT_LIMIT: Final = 64 * 1024
"""Inputs up to this size keep a text copy in their dead letter (see :func:`dead_letter_record`)."""

DEAD_LETTER_MAX_BYTES: Final = 1_000_000
"""Default largest dead letter: fits Kafka's default ``max.message.bytes`` (1,048,588)
and the producer's ``max.request.size`` (1,048,576) with room for the key and the
record batch's overhead."""


def dead_letter_record(
    raw: bytes | None,
    why: Rejected,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int = DEAD_LETTER_MAX_BYTES,
) -> tuple[str, bytes]:
    """Kafka key (text) and value of the dead letter of a rejected source record.

    The key is ``topic/partition/offset`` (unique, stable across replays). The
    text copy doubles a dead letter's size, so inputs over
    :data:`DEAD_LETTER_TEXT_LIMIT` keep only the base64 copy; a dead letter over
    ``max_bytes`` keeps a prefix of the input (see :func:`dead_letter`).
    """
    small = raw is None or len(raw) <= DEAD_LETTER_TEXT_LIMIT
    letter = dead_letter(
        raw,
        why.reason,
        why.detail,
        topic,
        partition,
        offset,
        include_text=small,
        max_bytes=max_bytes,
    )
    return f"{topic}/{partition}/{offset}", letter


def record_text(record: object) -> bytes:
    """A user's record as UTF-8 JSON for its dead letter: a Row as an object of its
    fields, values JSON cannot hold as their ``str``."""
    value = record.as_dict(recursive=True) if hasattr(record, "as_dict") else record
    try:
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return repr(value).encode("utf-8", "backslashreplace")


def record_dead_letter(
    record: object, why: Rejected, max_bytes: int = DEAD_LETTER_MAX_BYTES
) -> bytes:
    """The dead letter of a user's record (not from a Kafka source: no position).

    Same document as :func:`dead_letter`, with a null ``source`` position and
    the record as JSON (:func:`record_text`) for the original.
    """
    raw = record_text(record)
    small = len(raw) <= DEAD_LETTER_TEXT_LIMIT
    return dead_letter(
        raw, why.reason, why.detail, None, None, None, include_text=small, max_bytes=max_bytes
    )


def parse_dead_letter(data: bytes) -> DeadLetter:
    """Decode and check a value built by :func:`dead_letter` (for tests and checkers).

    :param data: a dead-letter record value.
    :return: the fields, with ``original_bytes`` decoded from base64 (a prefix of
        the input when ``truncated``), ``original`` set to ``None`` when the
        record has no text copy, and the whole input's size and SHA-256 (hex).
    :raises ValueError: if the value is not a well-formed dead letter, or its
        ``original`` text disagrees with ``original_b64``.
    """
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError(f"dead letter must be a JSON object, got {_json_type(doc)}")
    missing = {"reason", "detail", "source", "original_b64"} - doc.keys()
    if missing:
        raise ValueError(f"dead letter lacks {sorted(missing)}")
    source = doc["source"]
    if not isinstance(source, dict) or {"topic", "partition", "offset"} - source.keys():
        raise ValueError(f"dead letter source must have topic/partition/offset, got {source!r}")
    b64 = doc["original_b64"]
    original_bytes: bytes | None
    if b64 is None:
        original_bytes = None
    else:
        try:
            original_bytes = base64.b64decode(b64, validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValueError(f"dead letter original_b64 is not base64: {exc}") from exc
    original = doc.get("original")
    if original is not None and (
        not isinstance(original, str)
        or original_bytes is None
        or original.encode("utf-8", "surrogatepass") != original_bytes
    ):
        raise ValueError("dead letter 'original' text does not match 'original_b64'")
    truncated = doc.get("truncated", False) is True
    size, digest = doc.get("original_size"), doc.get("original_sha256")
    if original_bytes is not None and not truncated:
        size, digest = len(original_bytes), hashlib.sha256(original_bytes).hexdigest()
    elif truncated and not (
        isinstance(size, int) and isinstance(digest, str) and original_bytes is not None
    ):
        raise ValueError("a truncated dead letter needs original_size and original_sha256")
    return DeadLetter(
        reason=doc["reason"],
        detail=doc["detail"],
        source=_Source(
            topic=source["topic"], partition=source["partition"], offset=source["offset"]
        ),
        original_bytes=original_bytes,
        original=original,
        truncated=truncated,
        original_size=size,
        original_sha256=digest,
    )


def is_unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: no lone surrogate (from a ``\\ud800`` escape).

    Only such text can be UTF-8 (a Kafka key), a Java string handed to Python, or
    a Flink key.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _type_name(t: type) -> str:
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        dict: "object",
        list: "array",
    }.get(t, t.__name__)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__

"""How a record's identity (its deduplication key) is derived.

Two modes, chosen once per job by an :class:`IdentitySpec`:

* **id field**: the producer puts a unique id in the record (``msg_id`` or a
  dotted path such as ``meta.msg_id``). The id must be a non-empty string or an
  integer; the identity is type-tagged (``"s:1"`` for ``"1"``, ``"i:1"`` for
  ``1``) so that a string id and a numeric id never collide.
* **fingerprint**: no id exists, so a record's identity is a hash of its
  content: the whole object, or only ``fingerprint_fields``. Two records with
  equal content (up to object member order) are duplicates. The hash is taken
  over canonical JSON (:func:`onceflow.operators.records.canonical_json`), so number
  spelling counts: ``1`` and ``1.0`` are different. Fingerprints look like
  ``"f:<32 hex>"``.

The identity becomes the Flink key (``key_by``), so it is stored in every state
entry: a long id costs state. Bound it with the parser's ``max_bytes`` or use a
fingerprint of the id field (``IdentitySpec.by_fingerprint(("msg_id",))``).

An identity that cannot be derived is returned as a
:class:`~onceflow.operators.records.Rejected` (missing/null/empty/wrong-typed id, an id
that is not Unicode text, a missing fingerprint field) for the dead-letter
topic; it never raises on input.

When the stream is keyed in the JVM (the id's JSON text, see
:func:`onceflow.operators.dedup.flink.sql_key_expression`), :func:`jvm_key_matches`
checks that the Flink key and the identity Python derived from the same bytes
name the same id: the JVM's and Python's JSON parsers must never disagree
silently (duplicate member names, numbers, escapes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from onceflow.operators.records import (
    INVALID_UNICODE,
    MISSING,
    MISSING_FIELD,
    Rejected,
    get_path,
    is_unicode,
    require_field,
    split_path,
    stable_hash,
)

__all__ = ["IdentitySpec", "identity_of", "jvm_key_matches"]


@dataclass(frozen=True, slots=True)
class IdentitySpec:
    """Which part of a record identifies it; validated at construction.

    Exactly one mode must be chosen: ``id_field`` or ``fingerprint=True``.
    Prefer the :meth:`by_id` and :meth:`by_fingerprint` constructors.

    :param id_field: dotted path of the id field.
    :param fingerprint: derive the identity from the content instead.
    :param fingerprint_fields: with ``fingerprint``, the dotted paths that make
        up the content; ``None`` means the whole object.
    :raises ValueError: if no mode or both modes are chosen, a path is empty or
        malformed, ``fingerprint_fields`` is given without ``fingerprint``, is
        empty, not a tuple, or repeats a path.
    """

    id_field: str | None = None
    fingerprint: bool = False
    fingerprint_fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.id_field is not None) == bool(self.fingerprint):
            raise ValueError(
                "IdentitySpec needs exactly one mode: id_field='...' or fingerprint=True "
                f"(got id_field={self.id_field!r}, fingerprint={self.fingerprint!r})"
            )
        if self.id_field is not None:
            split_path(self.id_field)
        if self.fingerprint_fields is None:
            return
        if not self.fingerprint:
            raise ValueError("fingerprint_fields is only meaningful with fingerprint=True")
        if not isinstance(self.fingerprint_fields, tuple):
            # A list would make the frozen spec unhashable and silently mutable.
            raise ValueError(
                f"fingerprint_fields must be a tuple, got {type(self.fingerprint_fields).__name__}"
            )
        if not self.fingerprint_fields:
            raise ValueError(
                "fingerprint_fields is empty: every record would be a duplicate of the first; "
                "pass None to fingerprint the whole object"
            )
        for path in self.fingerprint_fields:
            split_path(path)
        if len(set(self.fingerprint_fields)) != len(self.fingerprint_fields):
            raise ValueError(f"fingerprint_fields repeats a path: {self.fingerprint_fields!r}")

    @classmethod
    def by_id(cls, id_field: str) -> IdentitySpec:
        """Identify records by the id at ``id_field`` (a dotted path)."""
        return cls(id_field=id_field)

    @classmethod
    def by_fingerprint(cls, fields: tuple[str, ...] | None = None) -> IdentitySpec:
        """Identify records by a hash of ``fields`` (``None``: the whole object)."""
        return cls(fingerprint=True, fingerprint_fields=fields)


def identity_of(obj: dict[str, Any], spec: IdentitySpec) -> str | Rejected:
    """Derive the deduplication identity of a decoded record.

    Deterministic: the same object and spec give the same identity in every
    process and after every restart, so it is safe as a Flink key.

    :param obj: the decoded record (from :func:`onceflow.operators.records.parse_object`).
    :param spec: the identity spec.
    :return: ``"s:<id>"`` / ``"i:<id>"`` for an id field, ``"f:<32 hex>"`` for a
        fingerprint, or :class:`~onceflow.operators.records.Rejected` if the id is
        missing, null, empty, or neither a string nor an integer (a boolean or
        a float is ``wrong_type``), a string with a lone surrogate
        (``invalid_unicode``), or a fingerprint field is missing.
    """
    if spec.id_field is not None:
        value = require_field(obj, spec.id_field, (str, int))
        if isinstance(value, Rejected):
            return value
        if isinstance(value, str):
            if not is_unicode(value):
                return Rejected(
                    INVALID_UNICODE,
                    f"field {spec.id_field!r} is not Unicode text (a lone surrogate escape)",
                )
            # The type tag keeps "1" and 1 apart: different producers, different ids.
            return f"s:{value}"
        return f"i:{value}"
    if spec.fingerprint_fields is None:
        return "f:" + stable_hash(obj)
    selected: dict[str, object] = {}
    for path in spec.fingerprint_fields:
        value = get_path(obj, path)
        if value is MISSING:
            return Rejected(MISSING_FIELD, f"fingerprint field {path!r} is absent")
        # null is a value here: {"a": null} and {} are different content.
        selected[path] = value
    return "f:" + stable_hash(selected)


def jvm_key_matches(flink_key: str, identity: str) -> bool:
    """Whether ``flink_key`` (the id's JSON text as the JVM rendered it, wrapped in
    an array: ``["a"]``, ``[42]``) names the id of ``identity`` (``"s:a"``, ``"i:42"``).

    Exact for every id: a fast comparison of the usual rendering, else the key
    is parsed as JSON and compared by type and value. Fingerprints are never
    keyed in the JVM: False.

    :param flink_key: the record's Flink key.
    :param identity: the identity :func:`identity_of` derived.
    """
    tag, text = identity[:2], identity[2:]
    if tag == "s:":
        if '"' not in text and "\\" not in text and flink_key == f'["{text}"]':
            return True
    elif tag == "i:":
        if flink_key == f"[{text}]":
            return True
    else:
        return False
    try:
        rendered = json.loads(flink_key)
    except ValueError:
        return False
    if not isinstance(rendered, list) or len(rendered) != 1:
        return False
    item = rendered[0]
    if tag == "s:":
        return isinstance(item, str) and item == text
    return isinstance(item, int) and not isinstance(item, bool) and str(item) == text

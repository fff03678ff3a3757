"""A client of a Confluent-compatible schema registry's REST API.

Speaks the subset of the Confluent Schema Registry API that producers and decoders need
(``POST /subjects/{subject}/versions``, ``GET /schemas/ids/{id}``,
``GET /subjects/{subject}/versions/latest``, ``GET /subjects``,
``POST /compatibility/subjects/{subject}/versions/latest``, ``GET|PUT /config/{subject}``),
so it works against
Apicurio Registry's ``/apis/ccompat/v7`` (the local stack's), Confluent's own registry
and Karapace alike. Standard library only (``urllib``).

Failure behaviour: a registry that cannot be reached, times out or answers 5xx raises
:class:`RegistryUnavailable` -- a transient condition, never a verdict about a record
(a decoder must not dead-letter a record because the registry was down). A schema id the
registry does not know is ``None`` from :meth:`SchemaRegistry.schema`, a verdict. Any
other refusal (an invalid schema, a subject's compatibility rule) raises
:class:`RegistryError` with the registry's own message.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onceflow.errors import OnceflowError

__all__ = [
    "Compatibility",
    "RegisteredSchema",
    "RegistryError",
    "RegistryUnavailable",
    "SchemaRegistry",
    "SubjectVersion",
]

log = logging.getLogger(__name__)

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})  # subject, version, schema not found


class RegistryUnavailable(OnceflowError):
    """The registry could not be reached or failed (5xx): retry later, decide nothing."""


class RegistryError(OnceflowError):
    """The registry refused a request (4xx).

    :ivar status: the HTTP status.
    :ivar error_code: the registry's ``error_code`` (e.g. 409 incompatible, 42201 invalid
        schema), or None.
    :ivar reason: the registry's own message, as it gave it.
    """

    def __init__(self, message: str, status: int, error_code: int | None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.reason = reason


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it.

    :param schema_id: the id records carry in their framing.
    :param schema_type: ``AVRO`` (the API omits the type for Avro), ``JSON`` or ``PROTOBUF``.
    :param text: the schema's canonical text as registered.
    """

    schema_id: int
    schema_type: str
    text: str


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject: its number and the schema it holds."""

    subject: str
    version: int
    schema: RegisteredSchema


@dataclass(frozen=True)
class Compatibility:
    """The registry's verdict on a schema against a subject's latest version.

    :param compatible: the subject's compatibility rule accepts the schema (a subject
        without versions accepts any).
    :param messages: the registry's reasons when it refuses (may be empty: Apicurio
        3.0's ccompat API answers ``{"is_compatible": false}`` alone, even verbose).
    """

    compatible: bool
    messages: tuple[str, ...] = ()


class SchemaRegistry:
    """A client of one registry; schemas looked up by id are cached (ids never change).

    :param url: the API's base URL, e.g. ``http://127.0.0.1:8085/apis/ccompat/v7``.
    :param timeout: seconds per HTTP request.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise OnceflowError(
                f"schema registry URL {url!r} is not an http(s) URL; pass e.g. "
                "http://127.0.0.1:8085/apis/ccompat/v7"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._by_id: dict[int, RegisteredSchema] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaRegistry({self._redacted_url()!r})"

    def _redacted_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # HTTP ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = _error_payload(exc)
            message = str(payload.get("message") or exc.reason)
            code = payload.get("error_code")
            error_code = int(code) if isinstance(code, int) else None
            if exc.code >= 500:
                raise RegistryUnavailable(
                    f"the schema registry at {self._redacted_url()} failed on {method} {path} "
                    f"(HTTP {exc.code}: {message}); see its log"
                ) from exc
            raise RegistryError(
                f"the schema registry at {self._redacted_url()} refused {method} {path} "
                f"(HTTP {exc.code}, error_code {error_code}): {message}",
                exc.code,
                error_code,
                message,
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(
                f"the schema registry at {self._redacted_url()} is not reachable ({reason}); "
                "start the local one with `onceflow stack up --registry` or point "
                "--registry-url / $ONCEFLOW_REGISTRY_URL at yours"
            ) from exc

    # API ----------------------------------------------------------------------------
    def register(
        self, subject: str, schema: str | Mapping[str, Any], schema_type: str = "AVRO"
    ) -> int:
        """Register ``schema`` under ``subject`` (idempotent: the same schema keeps its id).

        :param schema: the schema as text or as a parsed JSON object.
        :returns: the schema id records must carry.
        :raises RegistryError: the registry refused it (invalid, or incompatible with the
            subject's earlier versions under its compatibility rule).
        """
        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        answer = self._request(
            "POST",
            f"/subjects/{_quote(subject)}/versions",
            {"schema": text, "schemaType": schema_type},
        )
        schema_id = int(answer["id"])
        log.debug("registered a %s schema under %s: id %d", schema_type, subject, schema_id)
        return schema_id

    def schema(self, schema_id: int) -> RegisteredSchema | None:
        """The schema with id ``schema_id``, or None when the registry does not know it.

        Found schemas are cached; an unknown id is asked again next time (it may be
        registered meanwhile).

        :raises RegistryUnavailable: the registry could not answer.
        """
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        if not 0 <= schema_id < 2**31:
            return None  # a negative or overflowing id never names a schema
        try:
            answer = self._request("GET", f"/schemas/ids/{schema_id}")
        except RegistryError as exc:
            if exc.status == 404 or exc.error_code in _NOT_FOUND_CODES:
                return None
            raise
        found = RegisteredSchema(
            schema_id, str(answer.get("schemaType") or "AVRO"), str(answer["schema"])
        )
        with self._lock:
            self._by_id[schema_id] = found
        return found

    def latest(self, subject: str) -> SubjectVersion | None:
        """The latest version of ``subject``, or None when the subject does not exist."""
        try:
            answer = self._request("GET", f"/subjects/{_quote(subject)}/versions/latest")
        except RegistryError as exc:
            if exc.status == 404 or exc.error_code in _NOT_FOUND_CODES:
                return None
            raise
        schema = RegisteredSchema(
            int(answer["id"]), str(answer.get("schemaType") or "AVRO"), str(answer["schema"])
        )
        return SubjectVersion(str(answer["subject"]), int(answer["version"]), schema)

    def check_compatibility(
        self, subject: str, schema: str | Mapping[str, Any], schema_type: str = "AVRO"
    ) -> Compatibility:
        """Whether ``schema`` may be registered as the next version of ``subject``.

        Asks ``POST /compatibility/subjects/{subject}/versions/latest?verbose=true``. A
        subject that does not exist yet is compatible: the first version is never checked
        (Apicurio answers ``is_compatible: true``; Confluent's registry may answer 404 with
        error_code 40401, taken the same way).

        :raises RegistryError: the registry refused the request (e.g. an invalid schema).
        :raises RegistryUnavailable: the registry could not answer.
        """
        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        try:
            answer = self._request(
                "POST",
                f"/compatibility/subjects/{_quote(subject)}/versions/latest?verbose=true",
                {"schema": text, "schemaType": schema_type},
            )
        except RegistryError as exc:
            if exc.status == 404 and exc.error_code in (None, 40401, 40402):
                return Compatibility(True)
            raise
        answer = answer if isinstance(answer, dict) else {}
        messages = answer.get("messages") or []
        if not isinstance(messages, list):
            messages = [messages]
        return Compatibility(bool(answer.get("is_compatible")), tuple(str(m) for m in messages))

    def compatibility_level(self, subject: str) -> str | None:
        """The compatibility level ruling ``subject`` (its own, else the global one), or
        None when the registry does not say. (Apicurio answers ``GET /config/{subject}``
        with the effective level, the global one when the subject has none.)"""
        for path in (f"/config/{_quote(subject)}", "/config"):
            try:
                answer = self._request("GET", path)
            except RegistryError:
                continue
            if isinstance(answer, dict):
                level = answer.get("compatibilityLevel") or answer.get("compatibility")
                if level:
                    return str(level)
        return None

    def set_compatibility_level(self, subject: str, level: str) -> None:
        """Set ``subject``'s compatibility level (``BACKWARD``, ``FULL``, ``NONE``, ...)."""
        self._request("PUT", f"/config/{_quote(subject)}", {"compatibility": level})

    def subjects(self) -> list[str]:
        """Every subject the registry holds."""
        return [str(s) for s in self._request("GET", "/subjects")]


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _error_payload(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        payload = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return {}
    return payload if isinstance(payload, dict) else {}

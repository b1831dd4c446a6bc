"""The project's exceptions. Each builds its own message from its arguments.

::

    KenbunError
    ├── SettingsError (ValueError)        a setting or flag has an unusable value
    ├── BadRequest (ValueError)           a request parameter is malformed -> 400
    │   └── InvalidDate                   start_date / end_date
    ├── Unauthenticated                   no, malformed or invalid credentials -> 401
    ├── Forbidden                         no access to the active org unit -> 403
    │   └── NoActiveOrgUnit               nothing chose an org unit -> 403
    ├── UnsupportedMediaType              a body that is not application/json -> 415
    ├── RateLimited                       the credential spent its request budget -> 429
    ├── NotReady (LookupError)            no snapshot yet for the org unit -> 503
    ├── SourceError (RuntimeError)        PostgreSQL failed; the text never carries SQL
    ├── LoadError (RuntimeError)          a full load's child process died before answering
    ├── CorruptVersion (ValueError)       a published version's files do not match its manifest
    └── PublishError (RuntimeError)       the snapshot directory refused a publish
"""

from __future__ import annotations

import re


class KenbunError(Exception):
    """Base of every exception raised on purpose by kenbun-analytics."""


class SettingsError(KenbunError, ValueError):
    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r} is not valid: expected {expected}")


class BadRequest(KenbunError, ValueError):
    """A client error whose message is safe to show to the client."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class InvalidDate(BadRequest):
    def __init__(self, parameter: str) -> None:
        super().__init__(
            f"{parameter} must be a date YYYY-MM-DD or an RFC 3339 timestamp with an offset, "
            "such as 2026-03-01 or 2026-03-01T08:00:00Z or 2026-03-01T10:00:00.5+02:00"
        )


class Unauthenticated(KenbunError):
    def __init__(self, reason: str = "valid credentials are required") -> None:
        self.detail = (
            f"{reason}: send 'Authorization: Bearer <personal access token>' "
            "or HTTP Basic client_id:client_secret of a service account"
        )
        super().__init__(self.detail)


class Forbidden(KenbunError):
    def __init__(self) -> None:
        self.detail = "you may not read analytics of this organizational unit"
        super().__init__(self.detail)


class NoActiveOrgUnit(Forbidden):
    def __init__(self) -> None:
        super().__init__()
        self.detail = (
            "no active organizational unit: send an X-Org-Unit-Id header, or choose one "
            'with POST /org-units/active {"org_unit_id": "<uuid>"} (GET /org-units lists them)'
        )
        self.args = (self.detail,)


class UnsupportedMediaType(KenbunError):
    def __init__(self) -> None:
        self.detail = "send the body as JSON with Content-Type: application/json"
        super().__init__(self.detail)


class RateLimited(KenbunError):
    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        self.detail = (
            "too many requests for this credential: retry after "
            f"{self.retry_after_seconds} s, or repeat identical requests with If-None-Match"
        )
        super().__init__(self.detail)


class NotReady(KenbunError, LookupError):
    def __init__(self, org_unit_id: str) -> None:
        self.detail = "the analytics snapshot of this organizational unit is still loading"
        super().__init__(f"{self.detail} ({org_unit_id})")


class SourceError(KenbunError, RuntimeError):
    """PostgreSQL could not answer; ``operation`` says what we were doing."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        super().__init__(f"{operation} failed: {type(cause).__name__}: {_first_line(cause)}")

    def __reduce__(self) -> tuple[object, ...]:
        # It crosses from a load's child process (pickled) as its text alone.
        return (_source_error, (self.operation, str(self)))


def _source_error(operation: str, message: str) -> SourceError:
    error = SourceError.__new__(SourceError)
    RuntimeError.__init__(error, message)
    error.operation = operation
    return error


class LoadError(KenbunError, RuntimeError):
    """The child process of a full load exited without an answer (killed, out of memory)."""

    def __init__(self, org_unit_id: str) -> None:
        self.org_unit_id = org_unit_id
        super().__init__(f"the load process of org unit {org_unit_id} exited unexpectedly")


class CorruptVersion(KenbunError, ValueError):
    """A published version that a server refuses to map (it keeps the one it has)."""

    def __init__(self, org_unit_id: str, version: int, file: str, reason: str) -> None:
        self.org_unit_id = org_unit_id
        self.version = version
        super().__init__(
            f"version {version} of org unit {org_unit_id} is refused: {file}: {reason}"
        )


class PublishError(KenbunError, RuntimeError):
    """Publishing to the snapshot directory failed (unwritable, full, or the
    refresher lock lost); the versions published before stay."""

    def __init__(self, org_unit_id: str, reason: str) -> None:
        self.org_unit_id = org_unit_id
        super().__init__(f"publishing org unit {org_unit_id} failed: {reason}")


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+-]+){2,}[\\/]?")


def _first_line(cause: BaseException) -> str:
    """The driver's first line (later lines quote the SQL), without file paths."""
    text = str(cause).strip().splitlines()
    return _PATH.sub("[path]", text[0][:300]) if text else ""

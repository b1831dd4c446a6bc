"""Credentials, the active org unit, and access decisions.

A credential is looked up by the SHA-256 digest of its UTF-8 bytes and the
answer (found or not) is reused for ``cache_seconds``, never past the token's
own expiry: revocation, disabling and membership removal reach requests
within that time plus one lookup, while a high-volume client costs one dict
lookup per request. Secrets are compared only as digests, in constant time.

Tokens and secrets may be issued outside kenbun-analytics, in formats we do
not know, so any text is looked up, except text that cannot be a credential:
control characters, invalid UTF-8, an empty part, more than
:data:`MAX_CREDENTIAL_BYTES`, or our own prefix with a wrong checksum. Those get
a 401 without a database lookup. Valid lookups and failed ones are cached
apart, so a flood of made-up credentials cannot evict the real ones.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kenbun_analytics.errors import Forbidden, NoActiveOrgUnit, SourceError, Unauthenticated
from kenbun_analytics.source import identities as db
from kenbun_analytics.source.credentials import (
    SECRET_PREFIX,
    TOKEN_PREFIX,
    digest,
    has_valid_checksum,
)
from kenbun_analytics.source.postgres import Source

WWW_AUTHENTICATE = (
    'Bearer realm="kenbun-analytics", Basic realm="kenbun-analytics", charset="UTF-8"'
)
ACTIVE_OU_COOKIE = "kenbun_active_ou"
_CACHE_ENTRIES = 10_000
"""Credentials whose last lookup found them valid."""
_REFUSED_CACHE_ENTRIES = 1_000
"""Credentials whose last lookup found nothing: a client retrying a revoked or
mistyped credential costs a dict lookup, and unknown ones evict only each other."""
MAX_CREDENTIAL_BYTES = 512
"""A token, a client_id or a client secret longer than this (in UTF-8) is not one."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and which org units they may read (id -> name)."""

    kind: Literal["user", "service_account"]
    credential_id: str
    readable: dict[str, str]
    home_org_unit_id: str | None
    """The service account's own org unit, or the user's default."""
    expires_at: datetime | None


def parse_org_unit_id(value: str) -> str | None:
    """The canonical (lower-case hyphenated) form of a UUID, or None."""
    if len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Credential:
    kind: Literal["bearer", "basic"]
    key: bytes
    client_id: str


def _header_text(header: str) -> str:
    """HTTP headers arrive decoded as Latin-1; a credential is UTF-8 text."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise Unauthenticated("credentials must be UTF-8 text") from None


def _plausible(part: str, *, secret: bool = True) -> bool:
    """Whether ``part`` (a token or secret, or a client_id) can be a stored credential."""
    if not part or len(part.encode("utf-8", errors="surrogatepass")) > MAX_CREDENTIAL_BYTES:
        return False
    if _CONTROL.search(part):
        return False
    if secret and part.startswith((TOKEN_PREFIX, SECRET_PREFIX)):
        return has_valid_checksum(part)  # ours: a typo or a forgery is told offline
    return True


def _parse_authorization(header: str | None) -> _Credential:
    """The credential of an Authorization header; :class:`Unauthenticated`, without
    any lookup, for one that is missing, malformed or cannot be valid."""
    if header is None or not header.strip():
        raise Unauthenticated("credentials are required")
    header = _header_text(header)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        if not _plausible(value):
            raise Unauthenticated("invalid credentials")
        return _Credential("bearer", digest(value), "")
    if scheme.lower() == "basic" and value:
        if len(value) > 4 * (2 * MAX_CREDENTIAL_BYTES + 3) // 3:
            raise Unauthenticated("invalid credentials")
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthenticated("malformed Basic credentials") from None
        client_id, colon, secret = decoded.partition(":")
        if not colon or not client_id or not secret:
            raise Unauthenticated("malformed Basic credentials")
        if not _plausible(client_id, secret=False) or not _plausible(secret):
            raise Unauthenticated("invalid credentials")
        return _Credential("basic", digest(secret), client_id)
    raise Unauthenticated("unsupported or malformed Authorization header")


_Key = tuple[str, bytes]
"""(client_id, digest of the token or secret); client_id is empty for a token."""


class Authenticator:
    """Turns an Authorization header into a :class:`Principal`, with short caches.

    ``on_stale`` is called once for each answer given on a credential's last
    lookup because PostgreSQL could not be asked (see :meth:`_last_known`).
    """

    def __init__(
        self,
        source: Source,
        *,
        cache_seconds: float,
        stale_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._cache_seconds = cache_seconds
        self._stale_seconds = stale_seconds
        self._clock = clock
        self._on_stale = on_stale
        self._valid: OrderedDict[_Key, tuple[float, Principal]] = OrderedDict()
        """Lookup time and principal of credentials found valid, least recent first."""
        self._refused: OrderedDict[_Key, float] = OrderedDict()
        """Lookup time of credentials found invalid, least recent first."""
        self._lock = threading.Lock()

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal from the cache alone; None when a lookup is needed.

        Raises :class:`Unauthenticated` for a malformed header or a cached miss.
        """
        credential = _parse_authorization(authorization)
        return self._cached((credential.client_id, credential.key))

    def _cached(self, key: _Key) -> Principal | None:
        now = self._clock()
        with self._lock:
            entry = self._valid.get(key)
            refused_at = self._refused.get(key) if entry is None else None
        if entry is not None and now - entry[0] <= self._cache_seconds:
            if _expired(entry[1]):
                raise Unauthenticated("invalid credentials")
            return entry[1]
        if refused_at is not None and now - refused_at <= self._cache_seconds:
            raise Unauthenticated("invalid credentials")
        return None

    def authenticate(self, authorization: str | None) -> Principal:
        """Look the credential up (blocking I/O on a miss). Raises Unauthenticated."""
        credential = _parse_authorization(authorization)
        key = (credential.client_id, credential.key)
        principal = self._cached(key)
        if principal is not None:
            return principal
        fetched_at = self._clock()
        try:
            if credential.kind == "bearer":
                principal = self._user(credential)
            else:
                principal = self._service_account(credential)
        except SourceError as error:
            return self._last_known(key, fetched_at, error)
        valid = principal is not None and not _expired(principal)
        with self._lock:
            if principal is not None and valid:
                self._refused.pop(key, None)
                _remember(self._valid, key, (fetched_at, principal), _CACHE_ENTRIES)
            else:
                self._valid.pop(key, None)
                _remember(self._refused, key, fetched_at, _REFUSED_CACHE_ENTRIES)
        if principal is None or not valid:
            raise Unauthenticated("invalid credentials")
        return principal

    def _last_known(self, key: _Key, now: float, error: SourceError) -> Principal:
        """While PostgreSQL is unreachable: the answer of the last lookup, if recent
        enough; ``error`` otherwise. Each answer let in this way is logged and counted:
        the credential may have been revoked since."""
        with self._lock:
            entry = self._valid.get(key)
            refused_at = self._refused.get(key)
        if entry is not None and now - entry[0] <= self._stale_seconds:
            fetched_at, principal = entry
            if _expired(principal):
                raise Unauthenticated("invalid credentials")
            logger.warning(
                "credential let in on its last lookup, %.0f s old: the credential store "
                "is unreachable",
                now - fetched_at,
                extra={
                    "fields": {
                        "credential_kind": principal.kind,
                        "credential_id": principal.credential_id,
                        "lookup_age_seconds": round(now - fetched_at, 3),
                    }
                },
            )
            if self._on_stale is not None:
                self._on_stale()
            return principal
        if refused_at is not None and now - refused_at <= self._stale_seconds:
            raise Unauthenticated("invalid credentials")
        raise error

    def _user(self, credential: _Credential) -> Principal | None:
        row = db.token_principal(self._source, credential.key)
        if row is None or not hmac.compare_digest(bytes(row["token_sha256"]), credential.key):
            return None
        if not row["active"]:
            return None
        readable = dict(db.user_access(self._source, row["user_id"]))
        return Principal(
            kind="user",
            credential_id=row["credential_id"],
            readable=readable,
            home_org_unit_id=row["default_org_unit_id"],
            expires_at=row["expires_at"],
        )

    def _service_account(self, credential: _Credential) -> Principal | None:
        row = db.service_account_principal(self._source, credential.client_id)
        if row is None:
            # Spend the same comparison on a missing client_id as on a wrong secret.
            hmac.compare_digest(credential.key, bytes(32))
            return None
        if not hmac.compare_digest(bytes(row["secret_sha256"]), credential.key):
            return None
        if not row["active"]:
            return None
        readable = {row["org_unit_id"]: row["org_unit_name"]} if row["can_read"] else {}
        return Principal(
            kind="service_account",
            credential_id=row["credential_id"],
            readable=readable,
            home_org_unit_id=row["org_unit_id"],
            expires_at=None,
        )


def _remember(cache: OrderedDict[_Key, Any], key: _Key, value: Any, entries: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > entries:
        cache.popitem(last=False)


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= datetime.now(UTC)


def active_org_unit(principal: Principal, *, header: str | None, cookie: str | None) -> str:
    """The org unit a request reads, after checking the caller may read it.

    Header, then cookie, then the principal's home org unit. A value that is not
    a UUID, an org unit that does not exist and one without access all give the
    same :class:`Forbidden`.
    """
    chosen = header if header is not None else cookie
    if chosen is None:
        chosen = principal.home_org_unit_id
        if chosen is None:
            raise NoActiveOrgUnit
    org_unit_id = parse_org_unit_id(chosen)
    if org_unit_id is None or org_unit_id not in principal.readable:
        raise Forbidden
    return org_unit_id

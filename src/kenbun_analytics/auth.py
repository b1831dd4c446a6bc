"""Credentials, the active org unit, and access decisions.

A credential is looked up by the SHA-256 digest of its UTF-8 bytes and the
answer (found or not) is reused for ``cache_seconds``, never past the token's
own expiry: revocation, disabling and membership removal reach requests
within that time plus one lookup, while a high-volume client costs one dict
lookup per request. Secrets are compared only as digests, in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kenbun_analytics import source as db
from kenbun_analytics.errors import Forbidden, NoActiveOrgUnit, SourceError, Unauthenticated
from kenbun_analytics.source import Source

WWW_AUTHENTICATE = (
    'Bearer realm="kenbun-analytics", Basic realm="kenbun-analytics", charset="UTF-8"'
)
ACTIVE_OU_COOKIE = "kenbun_active_ou"
TOKEN_PREFIX = "kbn_pat_"  # noqa: S105 - a prefix, not a secret
SECRET_PREFIX = "kbn_sas_"  # noqa: S105 - a prefix, not a secret
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CACHE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and which org units they may read (id -> name)."""

    kind: Literal["user", "service_account"]
    credential_id: str
    readable: dict[str, str]
    home_org_unit_id: str | None
    """The service account's own org unit, or the user's default."""
    expires_at: datetime | None


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).digest()


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(_BASE62[remainder])
    return "".join(reversed(digits))


def new_secret(prefix: str) -> str:
    """``prefix`` + 30 base62 characters (178 bits) + a 6-character CRC32 checksum.

    The checksum lets a secret scanner recognise a real leaked credential
    without asking the database.
    """
    body = _base62(secrets.randbits(178), 30)
    return prefix + body + _base62(zlib.crc32(body.encode()), 6)


def has_valid_checksum(secret: str) -> bool:
    for prefix in (TOKEN_PREFIX, SECRET_PREFIX):
        if secret.startswith(prefix) and len(secret) == len(prefix) + 36:
            body, checksum = secret[len(prefix) : -6], secret[-6:]
            return _base62(zlib.crc32(body.encode()), 6) == checksum
    return False


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
        return header


def _parse_authorization(header: str | None) -> _Credential:
    if header is None or not header.strip():
        raise Unauthenticated("credentials are required")
    header = _header_text(header)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return _Credential("bearer", digest(value), "")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthenticated("malformed Basic credentials") from None
        client_id, colon, secret = decoded.partition(":")
        if not colon or not client_id or not secret:
            raise Unauthenticated("malformed Basic credentials")
        return _Credential("basic", digest(secret), client_id)
    raise Unauthenticated("unsupported or malformed Authorization header")


class Authenticator:
    """Turns an Authorization header into a :class:`Principal`, with a short cache."""

    def __init__(
        self,
        source: Source,
        *,
        cache_seconds: float,
        stale_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._cache_seconds = cache_seconds
        self._stale_seconds = stale_seconds
        self._clock = clock
        self._cache: OrderedDict[tuple[str, bytes], tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal from the cache alone; None when a lookup is needed.

        Raises :class:`Unauthenticated` for a malformed header or a cached miss.
        """
        credential = _parse_authorization(authorization)
        key = (credential.client_id, credential.key)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or self._clock() - entry[0] > self._cache_seconds:
            return None
        principal = entry[1]
        if principal is None or _expired(principal):
            raise Unauthenticated("invalid credentials")
        return principal

    def authenticate(self, authorization: str | None) -> Principal:
        """Look the credential up (blocking I/O on a miss). Raises Unauthenticated."""
        principal = self.cached(authorization)
        if principal is not None:
            return principal
        credential = _parse_authorization(authorization)
        key = (credential.client_id, credential.key)
        fetched_at = self._clock()
        try:
            if credential.kind == "bearer":
                principal = self._user(credential)
            else:
                principal = self._service_account(credential)
        except SourceError as error:
            return self._last_known(key, fetched_at, error)
        with self._lock:
            self._cache[key] = (fetched_at, principal)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        if principal is None or _expired(principal):
            raise Unauthenticated("invalid credentials")
        return principal

    def _last_known(self, key: tuple[str, bytes], now: float, error: SourceError) -> Principal:
        """While PostgreSQL is unreachable: the answer of the last lookup, if recent
        enough; ``error`` otherwise."""
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or now - entry[0] > self._stale_seconds:
            raise error
        principal = entry[1]
        if principal is None or _expired(principal):
            raise Unauthenticated("invalid credentials")
        return principal

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

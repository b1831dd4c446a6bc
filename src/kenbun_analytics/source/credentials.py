"""The format of the credentials kenbun-analytics issues itself (the local admin
issues them, authentication checks them): a prefix, 178 random bits and a
checksum, stored only as the SHA-256 digest of the whole text."""

from __future__ import annotations

import hashlib
import secrets
import zlib

TOKEN_PREFIX = "kbn_pat_"  # noqa: S105 - a prefix, not a secret
SECRET_PREFIX = "kbn_sas_"  # noqa: S105 - a prefix, not a secret
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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

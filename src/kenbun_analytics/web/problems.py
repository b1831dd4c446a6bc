"""Domain errors become HTTP statuses here, in exactly one place.

Every error body is ``{"status", "detail"}`` JSON; a detail says what was wrong
and how to fix it, and never carries a stack trace, SQL, a path or a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Response as LitestarResponse

from kenbun_analytics.errors import (
    BadRequest,
    Forbidden,
    KenbunError,
    NotReady,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from kenbun_analytics.web.auth import WWW_AUTHENTICATE
from kenbun_analytics.web.responses import JSON
from kenbun_analytics.web.schemas import ErrorBody, json_encoder

logger = logging.getLogger(__name__)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    body = json_encoder.encode(ErrorBody(status=status, detail=detail))
    return LitestarResponse(content=body, status_code=status, media_type=JSON, headers=headers)


_CLIENT_ERRORS: tuple[tuple[type[KenbunError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (BadRequest, 400),
    (UnsupportedMediaType, 415),
    (RateLimited, 429),
    (NotReady, 503),
)


def _error_headers(error: KenbunError) -> dict[str, str] | None:
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": WWW_AUTHENTICATE}
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after_seconds)}
    if isinstance(error, NotReady):
        return {"Retry-After": "5"}
    return None


def _kenbun_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    for kind, status in _CLIENT_ERRORS:
        if isinstance(error, kind):
            return _error(status, getattr(error, "detail", str(error)), _error_headers(error))
    logger.error("request failed: %s", error)
    return _error(503, "the analytics source is unavailable; retry shortly")


def _http_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    if not isinstance(error, HTTPException):
        return _unexpected_error(_, error)
    detail = error.detail
    if isinstance(error, ValidationException):
        detail = "a request parameter is not valid: " + str(error.detail)
    headers = {k: v for k, v in (error.headers or {}).items() if k.lower() == "allow"}
    return _error(error.status_code, detail, headers)


def _unexpected_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    logger.error("unexpected %s while answering a request", type(error).__name__)
    return _error(500, "internal error; retry later or contact support")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    KenbunError: _kenbun_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}

"""Repeated aggregates answered from the result cache before routing.

Dashboards ask the same ``GET /analytics/campaigns`` all day. When its answer
is already cached, this ASGI layer sends it without Litestar's routing,
parameter parsing and response machinery, with the same status, headers and
body and cache key (:mod:`kenbun_analytics.web.responses` builds both).

Only plain requests qualify: a credential found in the authentication cache,
no cookie, an Accept header (if any) that negotiates JSON, only the three
parameters of the window (none of the filters, tz, format...) in plain
characters, each given at most one value as
:func:`kenbun_analytics.web.params.given_values` reads them (an empty value is
no value, as in the app), and an answer in
the result cache (in gzip form, when the client accepts gzip and the answer is
worth compressing: the app compresses it, off the event loop). Everything
else, every error included, goes on to the app, which answers it the usual
way: this layer never decides an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from kenbun_analytics.errors import KenbunError
from kenbun_analytics.web.auth import active_org_unit
from kenbun_analytics.web.context import Services
from kenbun_analytics.web.params import (
    WINDOW_PARAMETERS,
    given_values,
    group_by_column,
    negotiate,
    parse_window,
)
from kenbun_analytics.web.responses import JSON, accepts_gzip, cached_answer, campaigns_key

PATH = "/analytics/campaigns"
_PLAIN = re.compile(r"(?:[A-Za-z0-9_.:-]|%3A)*")
"""A value whose decoding no parser disagrees on (``%`` only in ``%3A``)."""
_HEADERS = frozenset(
    {b"authorization", b"x-org-unit-id", b"accept", b"accept-encoding", b"if-none-match"}
)


def _parameters(query_string: bytes) -> dict[str, list[str]] | None:
    """The values of each parameter of a plain query string; None for anything else."""
    parameters: dict[str, list[str]] = {}
    if not query_string:
        return parameters
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError:
        return None
    for pair in text.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or name not in WINDOW_PARAMETERS or not _PLAIN.fullmatch(value):
            return None
        parameters.setdefault(name, []).append(unquote(value))
    return parameters


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str] | None:
    """The headers this layer reads; None with a cookie or one of them repeated."""
    headers: dict[bytes, str] = {}
    for name, value in raw:
        if name == b"cookie" or (name in _HEADERS and name in headers):
            return None
        if name in _HEADERS:
            headers[name] = value.decode("latin-1")
    return headers


def _answer(
    scope: dict[str, Any], services: Services
) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The cached answer of a plain request, or None to leave it to the app."""
    headers = _headers(scope["headers"])
    parameters = _parameters(scope["query_string"])
    if headers is None or parameters is None or negotiate(headers.get(b"accept")) != "json":
        return None
    try:
        principal = services.authenticator.cached(headers.get(b"authorization"))
        if principal is None:
            return None
        org_unit_id = active_org_unit(principal, header=headers.get(b"x-org-unit-id"), cookie=None)
        given = given_values(parameters)
        column = group_by_column(given.get("group_by"))
        start, end = parse_window(given.get("start_date"), given.get("end_date"))
    except KenbunError:
        return None
    snapshot = services.store.find(org_unit_id)
    if snapshot is None:
        return None
    key = campaigns_key(org_unit_id, snapshot, column, start, end)
    entry = services.cache.get(key, count=False)
    accept_encoding = headers.get(b"accept-encoding")
    if (
        entry is None
        or (entry.gzip_pending and accepts_gzip(accept_encoding))  # the app compresses it
        or not services.limiter.allow(principal.credential_id)
    ):
        return None
    services.cache.count_hit()
    status, extra, body = cached_answer(
        services.cache,
        key,
        entry,
        snapshot,
        accept_encoding=accept_encoding,
        if_none_match=headers.get(b"if-none-match"),
    )
    raw = [(name.lower().encode("latin-1"), text.encode("latin-1")) for name, text in extra.items()]
    if status == 200:
        raw += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    return status, raw, body


def serve_cached_hits(app: Any, services: Callable[[], Services | None]) -> Any:
    """Wrap an ASGI app: answer plain repeated aggregates from the cache (see above)."""

    async def hits(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            current = services()
            answer = None if current is None else _answer(scope, current)
            if answer is not None:
                status, headers, body = answer
                scope["path_template"] = PATH  # the route label of the request metrics
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return hits

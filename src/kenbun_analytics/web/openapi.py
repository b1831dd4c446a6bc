"""What the OpenAPI document says beyond what Litestar derives from the handlers.

Litestar builds the document from the handlers' signatures and decorators. Some
of what a client needs it cannot express there, so :func:`documented` gives a
handler an ``operation_class`` that completes its operation once built:

- response headers with a ``schema`` (``ResponseHeader`` has none, and an
  OpenAPI header object without one is invalid), on 200 and 304 and on the
  errors that carry ``WWW-Authenticate`` or ``Retry-After``;
- ``security: []`` (Litestar drops an empty list, so the operation would fall
  back to the document's default);
- the request body of a handler that reads the raw body itself (Litestar only
  documents a ``data`` parameter, which would also parse the body for us);
- a 204 without content (Litestar documents ``Response[None]`` as a JSON ``null``);
- the media type a text/* answer is sent with (Litestar adds "; charset=utf-8").

The error examples are built from the errors the service raises, so they show
its real messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from kenbun_analytics.engine.zones import INTERVALS
from kenbun_analytics.errors import (
    BadRequest,
    Forbidden,
    InvalidDate,
    NoActiveOrgUnit,
    NotReady,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from kenbun_analytics.web.auth import ACTIVE_OU_COOKIE, WWW_AUTHENTICATE
from kenbun_analytics.web.guard import MAX_BODY_BYTES, MAX_QUERY_BYTES, SINGLE_HEADERS
from kenbun_analytics.web.params import (
    ARROW,
    CSV,
    FORMATS,
    GROUP_BY_VALUES,
    MAX_FILTER_VALUES,
    MAX_LIMIT,
    MAX_NAMES,
    campaign_name_from_raw_path,
    given_values,
    parse_filters,
    parse_format,
    parse_interval,
    parse_page,
    parse_tz,
    parse_window,
)
from kenbun_analytics.web.schemas import ErrorBody, ReadyResponse

JSON = "application/json"

SECURITY_SCHEMES = {
    "personalAccessToken": SecurityScheme(
        type="http",
        scheme="bearer",
        description="A personal access token: Authorization: Bearer kbn_pat_...",
    ),
    "serviceAccount": SecurityScheme(
        type="http",
        scheme="basic",
        description="A service account: HTTP Basic with client_id:client_secret.",
    ),
}
CREDENTIALS: list[SecurityRequirement] = [{name: []} for name in SECURITY_SCHEMES]
"""Either credential kind."""

# ------------------------------------------------------------- parameters --

DATE_PATTERN = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?)?$"
)
"""YYYY-MM-DD, an RFC 3339 timestamp with an offset, or empty (no bound).

Documentation only: ``schema_extra`` is not checked by Litestar, and the
service's own parsing (:mod:`kenbun_analytics.web.params`) stays the judge, so a
value outside the pattern gets the same answer as before it was documented."""

_STRING = {"type": OpenAPIType.STRING, "one_of": None}
"""An optional parameter's schema is a string: a query string holds no null."""

GROUP_BY = QueryParameter(
    description="The UTM key to group on: campaign, source or medium. "
    "The service reads any other value as campaign.",
    examples=[Example(value="campaign")],
    schema_extra={**_STRING, "enum": list(GROUP_BY_VALUES)},
)
START_DATE = QueryParameter(
    description="Inclusive lower bound on event occurred_at: YYYY-MM-DD (UTC midnight) "
    "or an RFC 3339 timestamp with an offset. Empty or absent: no lower bound.",
    examples=[Example(value="2026-03-01"), Example(value="2026-03-01T08:00:00+02:00")],
    schema_extra={**_STRING, "pattern": DATE_PATTERN},
)
END_DATE = QueryParameter(
    description="Inclusive upper bound on event occurred_at: YYYY-MM-DD (the whole UTC day) "
    "or an RFC 3339 timestamp with an offset. Empty or absent: no upper bound.",
    examples=[Example(value="2026-03-31"), Example(value="2026-03-31T18:00:00Z")],
    schema_extra={**_STRING, "pattern": DATE_PATTERN},
)
_LIST = {"type": OpenAPIType.ARRAY, "items": Schema(type=OpenAPIType.STRING), "one_of": None}
"""A repeatable parameter: each value given once more (utm_source=a&utm_source=b)."""


def _utm_filter(parameter: str) -> QueryParameter:
    return QueryParameter(
        description=f"Repeatable: keep only the events whose {parameter} is one of these "
        "values, exactly (no trimming or case folding). Empty values are ignored; at most "
        f"{MAX_FILTER_VALUES} distinct values.",
        examples=[Example(value=["google"])],
        schema_extra={**_LIST, "max_items": MAX_FILTER_VALUES},
    )


UTM_CAMPAIGN = _utm_filter("utm_campaign")
UTM_SOURCE = _utm_filter("utm_source")
UTM_MEDIUM = _utm_filter("utm_medium")
TZ_PATTERN = r"^([A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*)?$"
TZ = QueryParameter(
    description="An IANA time zone name as the database spells it (Europe/Berlin, "
    "America/New_York, US/Eastern), default UTC: date-only start_date and end_date are "
    "days in this zone, and time-series buckets are its days, weeks or months. An offset "
    "such as +01:00 is not a zone.",
    examples=[Example(value="Europe/Berlin")],
    schema_extra={**_STRING, "pattern": TZ_PATTERN},
)
INTERVAL = QueryParameter(
    description="The bucket of the time series: day (the default), week (ISO, from Monday) "
    "or month.",
    examples=[Example(value="day")],
    schema_extra={**_STRING, "enum": list(INTERVALS)},
)
NAME = QueryParameter(
    description=f"Repeatable: the values to chart, at most {MAX_NAMES} distinct ones, in "
    "this order (a repeat is charted once). None: the first 10 rows of the aggregate.",
    examples=[Example(value=["spring"])],
    schema_extra={**_LIST, "max_items": MAX_NAMES},
)
LIMIT = QueryParameter(
    description=f"The page size: 1 to {MAX_LIMIT} leads (default {MAX_LIMIT}).",
    examples=[Example(value=100)],
    schema_extra={
        "type": OpenAPIType.INTEGER,
        "one_of": None,
        "minimum": 1,
        "maximum": MAX_LIMIT,
    },
)
OFFSET = QueryParameter(
    description="How many leads to skip before the page (default 0).",
    examples=[Example(value=0)],
    schema_extra={"type": OpenAPIType.INTEGER, "one_of": None, "minimum": 0},
)
FORMAT = QueryParameter(
    description="The answer's format: json, csv or arrow. Absent: chosen by the Accept header "
    "(text/csv, application/vnd.apache.arrow.stream; anything else is JSON).",
    examples=[Example(value="csv")],
    schema_extra={**_STRING, "enum": list(FORMATS)},
)
ORG_UNIT_HEADER = HeaderParameter(
    name="X-Org-Unit-Id",
    description="The org unit to read (a UUID from GET /org-units). Absent: the one chosen "
    "with POST /org-units/active (its cookie), else the credential's own or default one. "
    "On the analytics operations, a value that is not the id of an org unit the caller may "
    "read (a UUID or not) is a 403; GET /org-units then marks none active.",
    schema_extra={**_STRING, "format": OpenAPIFormat.UUID},
)
"""Documentation only, like the pattern: the handlers check the value themselves
(:func:`kenbun_analytics.web.auth.active_org_unit`), so a malformed one is a 403."""
CAMPAIGN_NAME = PathParameter(
    description="The UTM value itself, exactly as listed by GET /analytics/campaigns "
    "(for example a/b or 50% off).",
    examples=[Example(value="spring"), Example(value="a/b")],
)
CAMPAIGN_NAME_ENCODING = (
    " Raw HTTP callers percent-encode the value once, a slash as %2F and a percent sign "
    "as %25 (a/b is sent as /analytics/campaigns/a%2Fb/leads); generated clients do this "
    "themselves from the plain value."
)

# -------------------------------------------------------------- responses --


def _header(description: str, schema: Schema, *, required: bool = False) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, schema=schema, required=required)


_TEXT = Schema(type=OpenAPIType.STRING)
CACHE_HEADERS = {
    "ETag": _header(
        "Strong validator of the body; send it back as If-None-Match for a 304.",
        Schema(type=OpenAPIType.STRING, examples=['"5c1f0e2a9b7d4c31"']),
        required=True,
    ),
    "X-Snapshot-At": _header(
        "When the snapshot this answer was computed from was taken (RFC 3339, UTC).",
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
        required=True,
    ),
    "Cache-Control": _header(
        "private, no-cache: keep it, but revalidate with If-None-Match before reuse.",
        Schema(type=OpenAPIType.STRING, examples=["private, no-cache"]),
        required=True,
    ),
    "Vary": _header(
        "Accept, Accept-Encoding: the body depends on them (the format, and gzip when accepted).",
        Schema(type=OpenAPIType.STRING, examples=["Accept, Accept-Encoding"]),
    ),
}
PAGE_HEADERS = {
    **CACHE_HEADERS,
    "X-Total-Count": _header(
        "The number of the value's leads before paging.",
        Schema(type=OpenAPIType.INTEGER, minimum=0),
        required=True,
    ),
    "Link": _header(
        'The next page while more leads follow: <...?offset=500&limit=500&...>; rel="next".',
        Schema(type=OpenAPIType.STRING),
    ),
}
_SECONDS = Schema(type=OpenAPIType.INTEGER, minimum=1)
_RETRY_AFTER = _header("Seconds to wait before retrying (sent while a snapshot loads).", _SECONDS)
ERROR_HEADERS: dict[int, dict[str, OpenAPIHeader]] = {
    401: {
        "WWW-Authenticate": _header(
            "The accepted schemes: " + WWW_AUTHENTICATE, _TEXT, required=True
        )
    },
    429: {"Retry-After": _header("Seconds to wait before retrying.", _SECONDS, required=True)},
    503: {"Retry-After": _RETRY_AFTER},
}
SET_COOKIE = {
    "Set-Cookie": _header(
        f"{ACTIVE_OU_COOKIE}=<uuid>; HttpOnly; Path=/; SameSite=Lax (Secure over HTTPS): "
        "the chosen org unit, read by the other operations when X-Org-Unit-Id is absent.",
        _TEXT,
        required=True,
    )
}

ACTIVE_ORG_UNIT_BODY = RequestBody(
    required=True,
    description='The org unit to choose: {"org_unit_id": "<uuid>"}, sent as application/json.',
    content={
        JSON: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                title="ActiveOrgUnitRequest",
                required=["org_unit_id"],
                properties={
                    "org_unit_id": Schema(
                        type=OpenAPIType.STRING,
                        format=OpenAPIFormat.UUID,
                        description="The id of an org unit from GET /org-units.",
                    )
                },
            ),
            examples={
                "choose": Example(value={"org_unit_id": "0b6f8f2e-6c1a-4d57-9a51-2f0e7d1c3a44"})
            },
        )
    },
)


def _raised(call: Callable[[], object]) -> BadRequest:
    """The BadRequest that ``call`` raises: the service's own words for a bad parameter."""
    try:
        call()
    except BadRequest as error:
        return error
    raise AssertionError("expected a BadRequest")  # pragma: no cover


@dataclass
class _NamedExample(Example):
    """An example whose ``id`` names it in the document without becoming one of its
    fields (Litestar 2.25 writes ``id`` into the Example object, which is invalid)."""

    @property
    def _exclude_fields(self) -> set[str]:
        return {"id"}


def _error(status: int, summary: str, detail: str) -> Example:
    value = {"status": status, "detail": detail}
    return _NamedExample(id=summary.replace(" ", "-"), summary=summary, value=value)


def error_spec(status: int, description: str, *examples: tuple[str, str]) -> ResponseSpec:
    """An ErrorBody response with real examples (summary, detail)."""
    return ResponseSpec(
        data_container=ErrorBody,
        description=description,
        generate_examples=False,
        examples=[_error(status, summary, detail) for summary, detail in examples],
    )


_REPEATED_HEADERS = tuple(
    (f"repeated {name.decode()}", f"send the {name.decode()} header once")
    for name in SINGLE_HEADERS
)
"""From :mod:`kenbun_analytics.web.guard`, before any handler runs."""
_PARAMETER_ERRORS = (
    ("invalid start_date", InvalidDate("start_date").detail),
    ("invalid tz", _raised(lambda: parse_tz("+01:00")).detail),
    ("unknown format", _raised(lambda: parse_format("xml", None)).detail),
    (
        "too many filter values",
        _raised(lambda: parse_filters({"utm_source": [str(n) for n in range(101)]})).detail,
    ),
    ("start after end", _raised(lambda: parse_window("2026-03-02", "2026-03-01")).detail),
    (
        "repeated parameter",
        _raised(lambda: given_values({"group_by": ["a", "b"]})).detail,
    ),
    *_REPEATED_HEADERS,
)
_UNAUTHENTICATED = error_spec(
    401,
    "No, malformed or invalid credentials.",
    ("no credentials", Unauthenticated("credentials are required").detail),
    ("invalid credentials", Unauthenticated("invalid credentials").detail),
)
_RATE_LIMITED = error_spec(
    429,
    "The credential's rate limit is spent; Retry-After says when to retry.",
    ("rate limited", RateLimited(1).detail),
)
_SOURCE_DOWN = ("source unavailable", "the analytics source is unavailable; retry shortly")
_FORBIDDEN = ("no access", Forbidden().detail)

ANALYTICS_ERRORS = {
    400: error_spec(
        400,
        "A parameter is malformed, or a header is sent more than once; detail says which "
        "and the accepted forms.",
        *_PARAMETER_ERRORS,
    ),
    401: _UNAUTHENTICATED,
    403: error_spec(
        403,
        "No access to the active org unit (or no such org unit, or X-Org-Unit-Id is not a "
        "UUID), or none chosen.",
        _FORBIDDEN,
        ("no active org unit", NoActiveOrgUnit().detail),
    ),
    414: error_spec(
        414,
        f"The query string is longer than {MAX_QUERY_BYTES} bytes (or the path than the "
        "guard's bound).",
        (
            "query too long",
            f"the query string is longer than {MAX_QUERY_BYTES} bytes: "
            "send fewer or shorter filter values and names",
        ),
    ),
    429: _RATE_LIMITED,
    503: error_spec(
        503,
        "The org unit's first snapshot is still loading, or PostgreSQL is unreachable "
        "while checking the credential.",
        ("snapshot loading", NotReady("-").detail),
        _SOURCE_DOWN,
    ),
}
TIMESERIES_ERRORS = {
    **ANALYTICS_ERRORS,
    400: error_spec(
        400,
        "A parameter is malformed, or the window holds more than 1000 buckets; detail says "
        "which and the accepted forms.",
        *_PARAMETER_ERRORS,
        ("unknown interval", _raised(lambda: parse_interval("year")).detail),
        (
            "too many buckets",
            "the time series would have more than 1000 buckets: narrow the window "
            "(start_date, end_date) or choose a longer interval (week or month)",
        ),
    ),
}
LEADS_ERRORS = {
    **ANALYTICS_ERRORS,
    400: error_spec(
        400,
        "A parameter or the campaign_name is malformed; detail says which.",
        *_PARAMETER_ERRORS,
        ("invalid limit", _raised(lambda: parse_page("0", None)).detail),
        (
            "bad escape in campaign_name",
            _raised(lambda: campaign_name_from_raw_path(b"/analytics/campaigns/50%/leads")).detail,
        ),
    ),
}
ORG_UNITS_ERRORS = {
    400: error_spec(
        400,
        "The Authorization or X-Org-Unit-Id header is sent more than once.",
        *_REPEATED_HEADERS,
    ),
    401: _UNAUTHENTICATED,
    429: _RATE_LIMITED,
    503: error_spec(503, "PostgreSQL is unreachable while checking the credential.", _SOURCE_DOWN),
}
CHOOSE_ERRORS = {
    400: error_spec(
        400,
        "The body is not the JSON object described, or org_unit_id is not a UUID (or a "
        "header is sent more than once).",
        ("not the body", 'send the JSON body {"org_unit_id": "<uuid>"}'),
        ("not a UUID", "org_unit_id must be a UUID"),
        *_REPEATED_HEADERS,
    ),
    401: _UNAUTHENTICATED,
    403: error_spec(403, "No access to that org unit, or no such org unit.", _FORBIDDEN),
    413: error_spec(
        413,
        f"The body is larger than {MAX_BODY_BYTES} bytes.",
        ("body too large", f"the request body is larger than {MAX_BODY_BYTES} bytes"),
    ),
    415: error_spec(
        415,
        "The body is not sent as application/json.",
        ("not JSON", UnsupportedMediaType().detail),
    ),
    429: _RATE_LIMITED,
    503: ORG_UNITS_ERRORS[503],
}
READINESS_ERRORS = {
    503: ResponseSpec(
        data_container=ReadyResponse,
        description="Not ready yet: the first refresh is running or an org unit is loading.",
        generate_examples=False,
        examples=[
            _NamedExample(
                id="first-refresh-running",
                summary="first refresh running",
                value={
                    "ready": False,
                    "detail": "not ready: the first snapshot refresh has not finished",
                },
            )
        ],
    )
}
NOT_MODIFIED = ResponseSpec(
    data_container=None,
    description="The caller's If-None-Match holds the current ETag: no body.",
    generate_examples=False,
)

# ------------------------------------------------------------- operations --

TABULAR = {
    CSV + "; charset=utf-8": OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.STRING,
            description="RFC 4180 CSV (UTF-8, CRLF): a header row of the JSON's field names, "
            "then one line per JSON row (a time series: one per name and bucket, with the "
            "columns name, bucket_start and the metrics). Money and timestamps as in the JSON, "
            "NULL an empty field.",
        )
    ),
    ARROW: OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.BINARY,
            description="One Arrow IPC stream of the CSV's rows and columns: integers int64, "
            "money decimal128(38, 2), timestamps timestamp[us, tz=UTC], texts string.",
        )
    ),
}
"""The other formats of an analytics answer (format=csv|arrow or the Accept header)."""


def documented(
    *,
    headers: Mapping[int, Mapping[str, OpenAPIHeader]] | None = None,
    request_body: RequestBody | None = None,
    no_content: tuple[int, ...] = (),
    public: bool = False,
    sent_media_type: str | None = None,
    formats: bool = False,
) -> type[Operation]:
    """An ``operation_class`` completing the operation Litestar builds (see the module).

    ``public``: no credentials (``security: []``), hence none of the credential
    errors' headers. ``sent_media_type``: the Content-Type the 200 really carries,
    where Litestar adds a charset to the handler's media type."""
    all_headers = {**({} if public else ERROR_HEADERS), **(headers or {})}

    def complete(operation: Operation) -> None:
        for status, response in (operation.responses or {}).items():
            if not isinstance(response, OpenAPIResponse):
                continue
            if int(status) in no_content:
                response.content = None
            if status == "200" and sent_media_type is not None and response.content:
                (media,) = response.content.values()
                response.content = {sent_media_type: media}
            if status == "200" and formats and response.content:
                response.content = {**response.content, **TABULAR}
            if (extra := all_headers.get(int(status))) is not None:
                response.headers = {**(response.headers or {}), **extra}
            if response.headers == {}:
                response.headers = None
        if request_body is not None:
            operation.request_body = request_body
        if public:
            operation.security = []

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            complete(self)

    return Documented


ANALYTICS_HEADERS: dict[int, Mapping[str, OpenAPIHeader]] = {200: CACHE_HEADERS, 304: CACHE_HEADERS}
LEADS_HEADERS: dict[int, Mapping[str, OpenAPIHeader]] = {200: PAGE_HEADERS, 304: PAGE_HEADERS}

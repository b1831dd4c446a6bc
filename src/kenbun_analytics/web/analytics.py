"""The analytics routes: the aggregate per UTM value, its totals and time series,
and the leads behind one value (dashboards.md: filters, tz, pages, formats).

Each parses its parameters, authorizes the active org unit, and hands the cache
key and the computation to :func:`kenbun_analytics.web.responses.answer`.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter

from kenbun_analytics.web.answers import (
    Window,
    campaigns_body,
    leads_page,
    timeseries_body,
    totals_body,
)
from kenbun_analytics.web.context import (
    OrgUnitHeader,
    authorized_org_unit,
    services_of,
)
from kenbun_analytics.web.openapi import (
    ANALYTICS_ERRORS,
    ANALYTICS_HEADERS,
    CAMPAIGN_NAME,
    CAMPAIGN_NAME_ENCODING,
    CREDENTIALS,
    END_DATE,
    FORMAT,
    GROUP_BY,
    INTERVAL,
    LEADS_ERRORS,
    LEADS_HEADERS,
    LIMIT,
    NAME,
    NOT_MODIFIED,
    OFFSET,
    START_DATE,
    TIMESERIES_ERRORS,
    TZ,
    UTM_CAMPAIGN,
    UTM_MEDIUM,
    UTM_SOURCE,
    documented,
)
from kenbun_analytics.web.params import (
    FILTER_PARAMETERS,
    WINDOW_PARAMETERS,
    drilldown_campaign_name,
    given_values,
    group_by_column,
    parse_filters,
    parse_format,
    parse_interval,
    parse_names,
    parse_page,
    parse_tz,
    parse_zoned_window,
)
from kenbun_analytics.web.responses import (
    MEDIA_TYPES,
    answer,
    campaigns_key,
    dashboard_key,
    leads_key,
)
from kenbun_analytics.web.schemas import (
    CampaignsResponse,
    LeadsResponse,
    TimeseriesResponse,
    TotalsResponse,
)

AnyRequest = Request[Any, Any, Any]
Filter = list[str] | None


@dataclass(frozen=True, slots=True)
class Asked:
    """The parameters every analytics endpoint reads."""

    window: Window
    tz_name: str
    fmt: str
    single: dict[str, str | None]
    """The endpoint's single-valued parameters as given (None when absent)."""


def _asked(request: AnyRequest, *extra: str) -> Asked:
    """Group, window, filters, zone and format; ``extra`` names the endpoint's own
    single-valued parameters. Each single-valued parameter may be given once."""
    query = request.query_params
    names = (*WINDOW_PARAMETERS, "tz", "format", *extra)
    # Empty values are dropped first (an empty parameter is an absent one), then
    # a parameter with two values left is ambiguous: the rule of given_values,
    # which the pre-routing layer applies too.
    given = given_values({name: query.getall(name, []) for name in names}, names)
    single = {name: given.get(name) for name in names}
    filters = parse_filters({name: query.getall(name, []) for name in FILTER_PARAMETERS})
    column = group_by_column(single["group_by"])
    tz_name, tz = parse_tz(single["tz"])
    start, end = parse_zoned_window(single["start_date"], single["end_date"], tz)
    accept = ", ".join(request.headers.getall("accept", []))
    fmt = parse_format(single["format"], accept or None)
    return Asked(Window(column, start, end, filters), tz_name, fmt, single)


ANSWER_DOC = (
    " Filters utm_campaign, utm_source and utm_medium (repeatable) keep only the events "
    "with one of the given values of each; tz reads date-only bounds as days in that zone. "
    "The answer is JSON, or CSV or Arrow by format= or the Accept header."
)


@get(
    "/analytics/campaigns",
    summary="Aggregated UTM campaign performance",
    description="One row per UTM value of the chosen key with counting events in the window, "
    "sorted by total_events descending, then name." + ANSWER_DOC,
    tags=["analytics"],
    operation_id="listCampaigns",
    security=CREDENTIALS,
    response_description="The grouping applied and one row per UTM value.",
    responses={304: NOT_MODIFIED, **ANALYTICS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS, formats=True),
)
async def list_campaigns(
    request: AnyRequest,
    *,
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    utm_campaign: Annotated[Filter, UTM_CAMPAIGN] = None,
    utm_source: Annotated[Filter, UTM_SOURCE] = None,
    utm_medium: Annotated[Filter, UTM_MEDIUM] = None,
    tz: Annotated[str | None, TZ] = None,
    format: Annotated[str | None, FORMAT] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[CampaignsResponse]:
    org_unit_id = await authorized_org_unit(request, x_org_unit_id)
    asked = _asked(request)
    window = asked.window
    snapshot = services_of(request).store.get(org_unit_id)
    key = campaigns_key(
        org_unit_id,
        snapshot,
        window.group_by,
        window.start,
        window.end,
        filters=window.filters,
        fmt=asked.fmt,
    )
    return await answer(
        request,
        snapshot,
        key,
        functools.partial(
            campaigns_body,
            group_by=window.group_by,
            start=window.start,
            end=window.end,
            filters=window.filters,
            fmt=asked.fmt,
        ),
        media_type=MEDIA_TYPES[asked.fmt],
    )


@get(
    "/analytics/campaigns/totals",
    summary="Totals over every UTM value",
    description="The metrics of one aggregate row over every counting event of the key in "
    "the window, as if all values were one: each lead and deal counts once. values is the "
    "number of rows GET /analytics/campaigns gives for the same parameters." + ANSWER_DOC,
    tags=["analytics"],
    operation_id="getCampaignTotals",
    security=CREDENTIALS,
    response_description="The grouping applied and the totals.",
    responses={304: NOT_MODIFIED, **ANALYTICS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS, formats=True),
)
async def campaign_totals(
    request: AnyRequest,
    *,
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    utm_campaign: Annotated[Filter, UTM_CAMPAIGN] = None,
    utm_source: Annotated[Filter, UTM_SOURCE] = None,
    utm_medium: Annotated[Filter, UTM_MEDIUM] = None,
    tz: Annotated[str | None, TZ] = None,
    format: Annotated[str | None, FORMAT] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[TotalsResponse]:
    org_unit_id = await authorized_org_unit(request, x_org_unit_id)
    asked = _asked(request)
    window = asked.window
    snapshot = services_of(request).store.get(org_unit_id)
    key = dashboard_key("totals", org_unit_id, snapshot, window, asked.fmt)
    return await answer(
        request, snapshot, key, totals_body, window, asked.fmt, media_type=MEDIA_TYPES[asked.fmt]
    )


@get(
    "/analytics/campaigns/timeseries",
    summary="Metrics of UTM values per day, week or month",
    description="For each charted value (name, or the first 10 rows of the aggregate) and "
    "each bucket of the interval in tz, the metrics of that value's aggregate row over the "
    "window cut to the bucket. Buckets run from the one holding the window's start to the "
    "one holding its end (without a bound, the first or last counting event); at most "
    "1000." + ANSWER_DOC,
    tags=["analytics"],
    operation_id="getCampaignTimeseries",
    security=CREDENTIALS,
    response_description="The bucket starts and one series per charted value.",
    responses={304: NOT_MODIFIED, **TIMESERIES_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS, formats=True),
)
async def campaign_timeseries(
    request: AnyRequest,
    *,
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    utm_campaign: Annotated[Filter, UTM_CAMPAIGN] = None,
    utm_source: Annotated[Filter, UTM_SOURCE] = None,
    utm_medium: Annotated[Filter, UTM_MEDIUM] = None,
    tz: Annotated[str | None, TZ] = None,
    interval: Annotated[str | None, INTERVAL] = None,
    name: Annotated[Filter, NAME] = None,
    format: Annotated[str | None, FORMAT] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[TimeseriesResponse]:
    org_unit_id = await authorized_org_unit(request, x_org_unit_id)
    asked = _asked(request, "interval")
    step = parse_interval(asked.single["interval"])
    names = parse_names(request.query_params.getall("name", []))
    window = asked.window
    snapshot = services_of(request).store.get(org_unit_id)
    key = dashboard_key(
        "timeseries", org_unit_id, snapshot, window, asked.tz_name, step, tuple(names), asked.fmt
    )
    return await answer(
        request,
        snapshot,
        key,
        functools.partial(
            timeseries_body,
            window=window,
            tz_name=asked.tz_name,
            interval=step,
            names=names,
            fmt=asked.fmt,
        ),
        media_type=MEDIA_TYPES[asked.fmt],
    )


_PAGING = frozenset({"offset", "limit"})
_LINK_SAFE = "/?&=%+:@!$'()*,;~-._"


def next_link(raw_path: bytes, query_string: bytes, offset: int, limit: int) -> str:
    """The Link header's next-page reference: the request's own path and
    parameters (as sent) with ``offset`` and ``limit`` first."""
    kept = [
        pair
        for pair in query_string.decode("latin-1").split("&")
        if pair and urllib.parse.unquote_plus(pair.partition("=")[0]) not in _PAGING
    ]
    query = "&".join([f"offset={offset}", f"limit={limit}", *kept])
    path = raw_path.decode("latin-1")
    target = urllib.parse.quote(f"{path}?{query}", safe=_LINK_SAFE)
    return f'<{target}>; rel="next"'


_TOTAL = re.compile(r"[0-9]+")


async def _leads(request: AnyRequest, org_unit_header: str | None) -> Response[LeadsResponse]:
    org_unit_id = await authorized_org_unit(request, org_unit_header)
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    named = request.query_params.getall("campaign_name", [])
    campaign_name = drilldown_campaign_name(raw_path, named)
    if campaign_name is None:
        raise NotFoundException
    asked = _asked(request, "offset", "limit")
    offset, limit = parse_page(asked.single["limit"], asked.single["offset"])
    window = asked.window
    snapshot = services_of(request).store.get(org_unit_id)
    key = leads_key(
        org_unit_id,
        snapshot,
        group_by=window.group_by,
        campaign_name=campaign_name,
        start=window.start,
        end=window.end,
        filters=window.filters,
        offset=offset,
        limit=limit,
        fmt=asked.fmt,
    )
    response = await answer(
        request,
        snapshot,
        key,
        functools.partial(
            leads_page,
            window=window,
            campaign_name=campaign_name,
            offset=offset,
            limit=limit,
            fmt=asked.fmt,
        ),
        media_type=MEDIA_TYPES[asked.fmt],
    )
    total = response.headers.get("X-Total-Count", "")
    if _TOTAL.fullmatch(total) and offset + limit < int(total):
        path = raw_path.split(b"?", 1)[0]
        link = next_link(path, request.scope.get("query_string", b""), offset + limit, limit)
        response.headers["Link"] = link
    return response


@get(
    "/analytics/campaigns/{campaign_name:str}/leads",
    summary="Leads behind one UTM value",
    description="The leads with counting events for the value, ordered by first touch, "
    "most recent first, a page at a time (limit, at most 500, from offset). X-Total-Count "
    "gives the number of leads; Link the next page while more follow."
    + ANSWER_DOC
    + CAMPAIGN_NAME_ENCODING,
    tags=["analytics"],
    operation_id="listCampaignLeads",
    security=CREDENTIALS,
    response_description="The value and its leads.",
    responses={304: NOT_MODIFIED, **LEADS_ERRORS},
    operation_class=documented(headers=LEADS_HEADERS, formats=True),
)
async def list_campaign_leads(
    request: AnyRequest,
    *,
    campaign_name: Annotated[str, CAMPAIGN_NAME],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    utm_campaign: Annotated[Filter, UTM_CAMPAIGN] = None,
    utm_source: Annotated[Filter, UTM_SOURCE] = None,
    utm_medium: Annotated[Filter, UTM_MEDIUM] = None,
    tz: Annotated[str | None, TZ] = None,
    limit: Annotated[str | None, LIMIT] = None,
    offset: Annotated[str | None, OFFSET] = None,
    format: Annotated[str | None, FORMAT] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del campaign_name  # read from the raw path, decoded once (see _leads)
    return await _leads(request, x_org_unit_id)


# ASGI servers decode %2F before routing, so a value holding "/" arrives here, and
# so does /analytics/campaigns/leads?campaign_name=<value> (params.NAMED_LEADS_PATH).
@get("/analytics/campaigns/{rest:path}", include_in_schema=False)
async def list_campaign_leads_with_slashes(
    request: AnyRequest,
    *,
    rest: Annotated[str, PathParameter()],
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del rest  # the raw path is authoritative
    return await _leads(request, x_org_unit_id)


ROUTES = [
    list_campaigns,
    campaign_totals,
    campaign_timeseries,
    list_campaign_leads,
    list_campaign_leads_with_slashes,
]

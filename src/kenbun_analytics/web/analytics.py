"""The analytics routes: the aggregate per UTM value and the leads behind one value.

Each parses its parameters, authorizes the active org unit, and hands the cache
key and the computation to :func:`kenbun_analytics.web.responses.answer`.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter

from kenbun_analytics.web.answers import campaigns_body, leads_body
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
    GROUP_BY,
    LEADS_ERRORS,
    NOT_MODIFIED,
    START_DATE,
    documented,
)
from kenbun_analytics.web.params import (
    WINDOW_PARAMETERS,
    drilldown_campaign_name,
    given_values,
    group_by_column,
    parse_window,
)
from kenbun_analytics.web.responses import answer, campaigns_key, leads_key
from kenbun_analytics.web.schemas import CampaignsResponse, LeadsResponse


def _query_values(request: Request[Any, Any, Any]) -> tuple[str | None, str | None, str | None]:
    """group_by, start_date and end_date as :func:`given_values` reads them: the
    handlers' bound arguments keep an empty value and the last of repeated ones."""
    query = request.query_params
    given = given_values({name: query.getall(name, []) for name in WINDOW_PARAMETERS})
    return given.get("group_by"), given.get("start_date"), given.get("end_date")


@get(
    "/analytics/campaigns",
    summary="Aggregated UTM campaign performance",
    description="One row per UTM value of the chosen key with counting events in the window, "
    "sorted by total_events descending, then name.",
    tags=["analytics"],
    operation_id="listCampaigns",
    security=CREDENTIALS,
    response_description="The grouping applied and one row per UTM value.",
    responses={304: NOT_MODIFIED, **ANALYTICS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS),
)
async def list_campaigns(
    request: Request[Any, Any, Any],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[CampaignsResponse]:
    org_unit_id = await authorized_org_unit(request, x_org_unit_id)
    group_by, start_date, end_date = _query_values(request)
    column = group_by_column(group_by)
    start, end = parse_window(start_date, end_date)
    snapshot = services_of(request).store.get(org_unit_id)
    key = campaigns_key(org_unit_id, snapshot, column, start, end)
    return await answer(request, snapshot, key, campaigns_body, column, start, end)


async def _leads(
    request: Request[Any, Any, Any], org_unit_header: str | None
) -> Response[LeadsResponse]:
    org_unit_id = await authorized_org_unit(request, org_unit_header)
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    named = request.query_params.getall("campaign_name", [])
    campaign_name = drilldown_campaign_name(raw_path, named)
    if campaign_name is None:
        raise NotFoundException
    group_by, start_date, end_date = _query_values(request)
    column = group_by_column(group_by)
    start, end = parse_window(start_date, end_date)
    snapshot = services_of(request).store.get(org_unit_id)
    key = leads_key(
        org_unit_id, snapshot, group_by=column, campaign_name=campaign_name, start=start, end=end
    )
    return await answer(request, snapshot, key, leads_body, column, campaign_name, start, end)


@get(
    "/analytics/campaigns/{campaign_name:str}/leads",
    summary="Leads behind one UTM value",
    description="Up to 500 leads with counting events for the value, ordered by first touch, "
    "most recent first." + CAMPAIGN_NAME_ENCODING,
    tags=["analytics"],
    operation_id="listCampaignLeads",
    security=CREDENTIALS,
    response_description="The value and its leads.",
    responses={304: NOT_MODIFIED, **LEADS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS),
)
async def list_campaign_leads(
    request: Request[Any, Any, Any],
    *,
    campaign_name: Annotated[str, CAMPAIGN_NAME],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del campaign_name, group_by, start_date, end_date  # read from the request (see _leads)
    return await _leads(request, x_org_unit_id)


# ASGI servers decode %2F before routing, so a value holding "/" arrives here, and
# so does /analytics/campaigns/leads?campaign_name=<value> (params.NAMED_LEADS_PATH).
@get("/analytics/campaigns/{rest:path}", include_in_schema=False)
async def list_campaign_leads_with_slashes(
    request: Request[Any, Any, Any],
    *,
    rest: Annotated[str, PathParameter()],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del rest, group_by, start_date, end_date  # the raw path is authoritative (see _leads)
    return await _leads(request, x_org_unit_id)


ROUTES = [list_campaigns, list_campaign_leads, list_campaign_leads_with_slashes]

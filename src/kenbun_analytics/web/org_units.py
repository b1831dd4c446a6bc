"""The org-unit routes: which org units the caller may read, and choosing the active one."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.status_codes import HTTP_204_NO_CONTENT
from msgspec import DecodeError, ValidationError

from kenbun_analytics.errors import BadRequest, Forbidden, UnsupportedMediaType
from kenbun_analytics.web.auth import ACTIVE_OU_COOKIE, active_org_unit, parse_org_unit_id
from kenbun_analytics.web.context import OrgUnitHeader, principal_of, services_of
from kenbun_analytics.web.openapi import (
    ACTIVE_ORG_UNIT_BODY,
    CHOOSE_ERRORS,
    CREDENTIALS,
    ORG_UNITS_ERRORS,
    SET_COOKIE,
    documented,
)
from kenbun_analytics.web.schemas import OrgUnit, OrgUnitsResponse, active_org_unit_decoder


@get(
    "/org-units",
    summary="Org units the caller may read",
    description="Each with whether it is the active one: the one X-Org-Unit-Id names, else "
    "the one chosen with POST /org-units/active, else the credential's own or default one "
    "(none is active when that one is not readable).",
    tags=["org units"],
    operation_id="listOrgUnits",
    security=CREDENTIALS,
    response_description="The readable org units, by name.",
    responses=ORG_UNITS_ERRORS,
    operation_class=documented(),
)
async def list_org_units(
    request: Request[Any, Any, Any], x_org_unit_id: OrgUnitHeader = None
) -> OrgUnitsResponse:
    principal = await principal_of(request)
    try:
        active: str | None = active_org_unit(
            principal, header=x_org_unit_id, cookie=request.cookies.get(ACTIVE_OU_COOKIE)
        )
    except Forbidden:
        active = None
    units = sorted(principal.readable.items(), key=lambda item: (item[1], item[0]))
    return OrgUnitsResponse(
        org_units=[OrgUnit(id=unit, name=name, active=unit == active) for unit, name in units]
    )


@post(
    "/org-units/active",
    status_code=HTTP_204_NO_CONTENT,
    summary="Choose the active org unit",
    description='Body {"org_unit_id": "<uuid>"} as application/json. Sets the '
    f"{ACTIVE_OU_COOKIE} cookie, which the other operations read when no X-Org-Unit-Id "
    "header is sent.",
    tags=["org units"],
    operation_id="chooseOrgUnit",
    security=CREDENTIALS,
    response_description="Chosen; the cookie is set. No body.",
    responses=CHOOSE_ERRORS,
    operation_class=documented(
        request_body=ACTIVE_ORG_UNIT_BODY, headers={204: SET_COOKIE}, no_content=(204,)
    ),
)
async def choose_org_unit(request: Request[Any, Any, Any]) -> Response[None]:
    principal = await principal_of(request)
    if request.content_type[0] != "application/json":
        raise UnsupportedMediaType
    raw = await request.body()
    try:
        body = active_org_unit_decoder.decode(raw)
    except (DecodeError, ValidationError):
        raise BadRequest('send the JSON body {"org_unit_id": "<uuid>"}') from None
    org_unit_id = parse_org_unit_id(body.org_unit_id)
    if org_unit_id is None:
        raise BadRequest("org_unit_id must be a UUID")
    active_org_unit(principal, header=org_unit_id, cookie=None)
    cookie = Cookie(
        key=ACTIVE_OU_COOKIE,
        value=org_unit_id,
        httponly=True,
        samesite="lax",
        path="/",
        secure=services_of(request).secure_cookies,
    )
    return Response(content=None, status_code=HTTP_204_NO_CONTENT, cookies=[cookie])


ROUTES = [list_org_units, choose_org_unit]

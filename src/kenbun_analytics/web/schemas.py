"""msgspec Structs for every request and response body, and the one JSON encoder."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar.openapi.spec import OpenAPIType
from litestar.params import KwargDefinition


class Body(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every body we send or accept.

    - ``frozen``: a body is a value; building it is the last step of a request.
    - ``kw_only``: fields are named at every construction, so adding one never
      shifts another.
    - Field order is the JSON key order, which keeps responses byte-stable.
    """


_DECIMAL = (
    "Exact decimal amount with two decimal places, sent as a JSON number (never rounded "
    "through a float). Parse it as a decimal, not a binary float: in Python "
    "json.loads(text, parse_float=Decimal)."
)
Money = Annotated[
    Decimal,
    KwargDefinition(
        schema_extra={
            "type": OpenAPIType.NUMBER,
            "format": "decimal",
            "multiple_of": 0.01,
        },
        description=_DECIMAL,
    ),
]
"""numeric(18,2) money: a Decimal here, a JSON number on the wire."""
OptionalMoney = Annotated[
    Decimal | None,
    KwargDefinition(
        schema_extra={
            "type": [OpenAPIType.NUMBER, OpenAPIType.NULL],
            "one_of": None,
            "format": "decimal",
            "multiple_of": 0.01,
        },
        description=_DECIMAL + " Null when there is none.",
    ),
]


class CampaignRow(Body, frozen=True, kw_only=True):
    name: str
    total_events: int
    unique_leads: int
    mql_count: int
    total_points: int
    deals_count: int
    pipeline_value: Money
    closed_won_value: Money
    first_event_at: datetime | None
    last_event_at: datetime | None


class CampaignsResponse(Body, frozen=True, kw_only=True):
    group_by: str
    campaigns: list[CampaignRow]


class LeadRow(Body, frozen=True, kw_only=True):
    lead_id: str
    display_name: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    score: int
    level: str | None
    account_id: str | None
    account_name: str | None
    deal_stage: str | None
    deal_amount: OptionalMoney
    first_touch_at: datetime | None
    last_touch_at: datetime | None


class LeadsResponse(Body, frozen=True, kw_only=True):
    campaign_name: str
    leads: list[LeadRow]


class Totals(Body, frozen=True, kw_only=True):
    values: int
    total_events: int
    unique_leads: int
    mql_count: int
    total_points: int
    deals_count: int
    pipeline_value: Money
    closed_won_value: Money
    first_event_at: datetime | None
    last_event_at: datetime | None


class TotalsResponse(Body, frozen=True, kw_only=True):
    group_by: str
    totals: Totals


class Series(Body, frozen=True, kw_only=True):
    name: str
    total_events: list[int]
    unique_leads: list[int]
    mql_count: list[int]
    total_points: list[int]
    deals_count: list[int]
    pipeline_value: list[Money]
    closed_won_value: list[Money]


class TimeseriesResponse(Body, frozen=True, kw_only=True):
    group_by: str
    interval: str
    tz: str
    buckets: list[str]
    series: list[Series]


class CampaignsEnvelope(Body, frozen=True, kw_only=True):
    """What is sent for :class:`CampaignsResponse`: the rows arrive as JSON text."""

    group_by: str
    campaigns: msgspec.Raw


class LeadsEnvelope(Body, frozen=True, kw_only=True):
    """What is sent for :class:`LeadsResponse`: the rows arrive as JSON text."""

    campaign_name: str
    leads: msgspec.Raw


class ErrorBody(Body, frozen=True, kw_only=True):
    status: int
    detail: str


class ActiveOrgUnitRequest(Body, frozen=True, kw_only=True):
    org_unit_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class OrgUnit(Body, frozen=True, kw_only=True):
    id: str
    name: str
    active: bool


class OrgUnitsResponse(Body, frozen=True, kw_only=True):
    org_units: list[OrgUnit]


class OrgUnitHealth(Body, frozen=True, kw_only=True):
    org_unit_id: str
    snapshot_at: datetime | None
    snapshot_age_seconds: float | None
    events: int | None
    last_error: str | None
    version: int | None = None


class StoreHealth(Body, frozen=True, kw_only=True):
    """This process's part in a deployment sharing a snapshot directory."""

    role: str
    election_error: str | None
    last_publish_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    refused_versions: int
    bytes_held: int


class HealthResponse(Body, frozen=True, kw_only=True):
    status: str
    last_refresh_error: str | None
    last_refresh_seconds: float | None
    org_units: list[OrgUnitHealth]
    store: StoreHealth | None = None


class ReadyResponse(Body, frozen=True, kw_only=True):
    ready: bool
    detail: str


json_encoder = msgspec.json.Encoder(decimal_format="number")
active_org_unit_decoder = msgspec.json.Decoder(ActiveOrgUnitRequest)


class StatusResponse(Body, frozen=True, kw_only=True):
    status: str

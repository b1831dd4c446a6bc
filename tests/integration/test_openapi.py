"""The served OpenAPI document: valid, complete, true to the live service, and
good enough for a generated client to do everything the service offers."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from kenbun_analytics.errors import (
    Forbidden,
    InvalidDate,
    NoActiveOrgUnit,
    NotReady,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from kenbun_analytics.web.openapi import DATE_PATTERN
from kenbun_analytics.web.params import _DATE, _TIMESTAMP, parse_bound
from support.world import World, from_json
from tests.conftest import LiveServer, live_server, make_app, refresh

Client = TestClient[Litestar]
DOCUMENT = "/schema/openapi.json"
BIG = Decimal("1234567890123456.78")
"""A numeric(18,2) amount a binary float cannot hold: it reads back as ...456.8."""

OPERATIONS = {
    ("get", "/analytics/campaigns"): "listCampaigns",
    ("get", "/analytics/campaigns/{campaign_name}/leads"): "listCampaignLeads",
    ("get", "/analytics/campaigns/totals"): "getCampaignTotals",
    ("get", "/analytics/campaigns/timeseries"): "getCampaignTimeseries",
    ("get", "/org-units"): "listOrgUnits",
    ("post", "/org-units/active"): "chooseOrgUnit",
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
}
ANALYTICS = [
    ("get", "/analytics/campaigns"),
    ("get", "/analytics/campaigns/{campaign_name}/leads"),
    ("get", "/analytics/campaigns/totals"),
    ("get", "/analytics/campaigns/timeseries"),
]
CREDENTIALED = [*ANALYTICS, ("get", "/org-units"), ("post", "/org-units/active")]
PUBLIC = [("get", "/healthz"), ("get", "/readyz")]


def decimal_json(text: str | bytes) -> Any:
    """JSON with every non-integer number as an exact Decimal: how to read money."""
    return json.loads(text, parse_float=Decimal)


@dataclass
class Shop:
    """Two org units one analyst reads, a third they do not, and money a float cannot hold."""

    acme: str
    beta: str
    other: str
    lead: str
    bearer: str
    """Authorization header of the analyst (default org unit: acme)."""
    basic: str
    """Authorization header of acme's service account."""
    homeless: str
    """Authorization header of a user of acme without a default org unit."""


@pytest.fixture
def shop(world: World) -> Shop:
    acme, beta, other = world.org_unit("Acme"), world.org_unit("Beta"), world.org_unit("Other")
    big_account, small_account = world.account(acme, "Big Co"), world.account(acme, "Small Co")
    world.deal(acme, big_account, amount=BIG, stage="closed_won")
    world.deal(acme, big_account, amount="19.99", stage="negotiation")
    world.deal(acme, small_account, amount="0.07", stage="closed_won")
    lead = world.lead(acme, account=big_account, level="Hot")
    small = world.lead(acme, account=small_account, level="Cold")
    for campaign in ("spring", "a/b", "50% off"):
        world.event(acme, lead=lead, campaign=campaign, source="news", medium="email")
    world.event(acme, lead=small, campaign="spring", source="ads", medium="cpc")
    world.event(beta, lead=world.lead(beta), campaign="beta only")
    world.event(other, lead=world.lead(other), campaign="secret")
    analyst = world.user(default_org_unit=acme)
    world.member(analyst, acme)
    world.member(analyst, beta)
    homeless = world.user()
    world.member(homeless, acme)
    _, basic = world.service_account(acme)
    return Shop(
        acme=acme,
        beta=beta,
        other=other,
        lead=lead,
        bearer=world.token(analyst),
        basic=basic,
        homeless=world.token(homeless),
    )


@pytest.fixture
def live(shop: Shop, database_url: str) -> Iterator[LiveServer]:
    with live_server(make_app(database_url)) as server:
        assert server.app.state.refresher.refresh(wait=True)
        yield server


# ------------------------------------------------------------- document --


def test_served_document_validates(client: Client) -> None:
    """openapi-spec-validator accepts the served document (every header has a schema)."""
    document = client.get(DOCUMENT).json()
    validate(document)
    for item in document["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for name, header in (response.get("headers") or {}).items():
                    assert "schema" in header, name


def test_only_the_json_document_is_served_under_schema(client: Client) -> None:
    """No Swagger UI, or any other page: /schema is the JSON document, the rest 404s."""
    document = client.get(DOCUMENT)
    root = client.get("/schema")
    assert root.status_code == 200
    assert root.headers["content-type"] == document.headers["content-type"]
    assert root.json() == document.json()
    for page in ("/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc"):
        response = client.get(page)
        assert response.status_code == 404, page
        assert "<script" not in response.text.lower()
        assert "cdn" not in response.text.lower()


def test_operations_ids_and_security(client: Client) -> None:
    """Plain camelCase operationIds; credentials on the API, none on the operations endpoints."""
    document = client.get(DOCUMENT).json()
    found = {
        (method, path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert found == OPERATIONS
    assert "security" not in document
    schemes = document["components"]["securitySchemes"]
    assert schemes["personalAccessToken"] == {**schemes["personalAccessToken"], "type": "http"}
    assert schemes["personalAccessToken"]["scheme"] == "bearer"
    assert schemes["serviceAccount"]["scheme"] == "basic"
    for method, path in CREDENTIALED:
        assert document["paths"][path][method]["security"] == [
            {"personalAccessToken": []},
            {"serviceAccount": []},
        ]
    for method, path in PUBLIC:
        assert document["paths"][path][method]["security"] == []


def test_parameters_are_declared(client: Client) -> None:
    """group_by is an enum, the dates have a pattern, X-Org-Unit-Id is an optional uuid
    header wherever it is read, and campaign_name is the plain value."""
    document = client.get(DOCUMENT).json()
    for method, path in [*ANALYTICS, ("get", "/org-units")]:
        parameters = {p["name"]: p for p in document["paths"][path][method]["parameters"]}
        header = parameters["X-Org-Unit-Id"]
        assert header["in"] == "header"
        assert header["required"] is False
        assert header["schema"]["type"] == "string"
        assert header["schema"]["format"] == "uuid"
    for method, path in ANALYTICS:
        parameters = {p["name"]: p for p in document["paths"][path][method]["parameters"]}
        assert parameters["group_by"]["schema"]["enum"] == ["campaign", "source", "medium"]
        for name in ("start_date", "end_date"):
            assert parameters[name]["schema"] == {
                **parameters[name]["schema"],
                "type": "string",
                "pattern": DATE_PATTERN,
            }
    leads = document["paths"]["/analytics/campaigns/{campaign_name}/leads"]["get"]
    name = next(p for p in leads["parameters"] if p["name"] == "campaign_name")
    assert "encod" not in name["description"].lower()
    assert "percent-encode the value once" in leads["description"]
    assert "%2F" in leads["description"]
    for method, path in [*PUBLIC, ("post", "/org-units/active")]:
        parameters = document["paths"][path][method].get("parameters", [])
        assert not any(p["name"] == "X-Org-Unit-Id" for p in parameters)


def test_request_body_and_empty_responses(client: Client) -> None:
    """chooseOrgUnit takes a required JSON body and answers 204 without content; the
    analytics operations declare their 304 without content, with its headers."""
    document = client.get(DOCUMENT).json()
    choose = document["paths"]["/org-units/active"]["post"]
    body = choose["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["org_unit_id"]
    assert schema["properties"]["org_unit_id"]["format"] == "uuid"
    assert "content" not in choose["responses"]["204"]
    assert "Set-Cookie" in choose["responses"]["204"]["headers"]
    assert set(choose["responses"]) == {"204", "400", "401", "403", "413", "415", "429", "503"}
    for method, path in ANALYTICS:
        responses = document["paths"][path][method]["responses"]
        assert set(responses) == {"200", "304", "400", "401", "403", "414", "429", "503"}
        assert "content" not in responses["304"]
        for status in ("200", "304"):
            headers = responses[status]["headers"]
            assert set(headers) >= {"ETag", "X-Snapshot-At", "Cache-Control"}
            assert headers["X-Snapshot-At"]["schema"]["format"] == "date-time"


def test_money_is_documented_as_exact_decimals(client: Client) -> None:
    """Money is a number with format decimal and multipleOf 0.01, to be parsed as such."""
    document = client.get(DOCUMENT).json()
    schemas = document["components"]["schemas"]
    for schema, field, kind in (
        ("CampaignRow", "pipeline_value", "number"),
        ("CampaignRow", "closed_won_value", "number"),
        ("LeadRow", "deal_amount", ["number", "null"]),
    ):
        money = schemas[schema]["properties"][field]
        assert money["type"] == kind
        assert money["format"] == "decimal"
        assert money["multipleOf"] == 0.01
        assert "json.loads(text, parse_float=Decimal)" in money["description"]


def test_error_examples_are_the_services_own_answers(client: Client) -> None:
    """Each error example has its response's status and a message the service sends."""
    document = client.get(DOCUMENT).json()
    assert "examples" not in document["components"]["schemas"]["ErrorBody"]
    expected = {
        InvalidDate("start_date").detail,
        Unauthenticated("credentials are required").detail,
        Forbidden().detail,
        NoActiveOrgUnit().detail,
        UnsupportedMediaType().detail,
        RateLimited(1).detail,
        NotReady("x").detail,
    }
    seen = set()
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")) or "ErrorBody" not in json.dumps(response):
                    continue
                examples = response["content"]["application/json"]["examples"]
                assert examples, (operation["operationId"], status)
                for example in examples.values():
                    assert example["value"]["status"] == int(status)
                    seen.add(example["value"]["detail"])
    assert expected <= seen


# ------------------------------------------------ documentation-only constraints --


@given(st.from_regex(DATE_PATTERN, fullmatch=True))
def test_every_value_of_the_date_pattern_is_a_date_or_a_clear_400(value: str) -> None:
    """The pattern describes the runtime's forms: a value of it parses, or is an
    impossible date (a 400 naming the parameter); the empty value means no bound."""
    if value == "":
        return  # absent: the runtime's handling of "" is another change (issue #25)
    try:
        bound = parse_bound("start_date", value, end=False)
    except InvalidDate:
        return  # an impossible date or offset (2026-02-30, +24:00): a 400 naming it
    assert bound is not None
    assert bound.utcoffset() == timedelta(0)


@given(st.one_of(st.from_regex(_DATE, fullmatch=True), st.from_regex(_TIMESTAMP, fullmatch=True)))
def test_the_runtimes_forms_match_the_pattern(value: str) -> None:
    """What the runtime reads matches the pattern, but for the spaces it also tolerates
    (around the value, before the time, and an unencoded "+" before the offset)."""
    if " " not in value:
        assert re.fullmatch(DATE_PATTERN, value), value


@pytest.mark.parametrize(
    ("parameters", "same_as"),
    [
        ({"group_by": "Source"}, {}),
        ({"group_by": "anything"}, {"group_by": "campaign"}),
        ({"group_by": ""}, {}),
        ({"start_date": " 2026-03-01 "}, {"start_date": "2026-03-01"}),
        ({"start_date": "2026-03-01 00:00:00Z"}, {"start_date": "2026-03-01T00:00:00Z"}),
        ({"end_date": "2026-03-31T10:00:00 02:00"}, {"end_date": "2026-03-31T10:00:00+02:00"}),
    ],
)
def test_values_outside_the_documentation_are_answered_as_before(
    shop: Shop, client: Client, parameters: dict[str, str], same_as: dict[str, str]
) -> None:
    """The enum and pattern are documentation: Litestar does not check them, and values
    the service read before still get their answer, not a 400."""
    refresh(client)
    headers = {"Authorization": shop.bearer}
    for path in ("/analytics/campaigns", "/analytics/campaigns/spring/leads"):
        response = client.get(path, params=parameters, headers=headers)
        assert response.status_code == 200, response.text
        assert response.content == client.get(path, params=same_as, headers=headers).content


def test_the_org_unit_header_is_judged_as_before(shop: Shop, client: Client) -> None:
    """A declared uuid header, yet a value that is not one is a 403 like an unreadable
    org unit (not Litestar's 400), and GET /org-units then marks none active."""
    refresh(client)
    for value in ("not-a-uuid", "", shop.other, shop.other.upper(), "{" + shop.beta + "}x"):
        headers = {"Authorization": shop.bearer, "X-Org-Unit-Id": value}
        for path in ("/analytics/campaigns", "/analytics/campaigns/spring/leads"):
            response = client.get(path, headers=headers)
            assert response.status_code == 403, (value, response.text)
            assert response.json() == {"status": 403, "detail": Forbidden().detail}
        units = client.get("/org-units", headers=headers)
        assert units.status_code == 200
        assert not any(unit["active"] for unit in units.json()["org_units"])
    upper = {"Authorization": shop.bearer, "X-Org-Unit-Id": shop.beta.upper()}
    beta = client.get("/analytics/campaigns", headers=upper).json()
    assert [row["name"] for row in beta["campaigns"]] == ["beta only"]


# ------------------------------------------------------ generated client --


@pytest.fixture
def generated(live: LiveServer, tmp_path: Path) -> Iterator[ModuleType]:
    """A client generated by openapi-python-client from the live document, imported."""
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--url",
            live.base + DOCUMENT,
            "--output-path",
            str(tmp_path / "kenbun_client"),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        # Its post-generation hook formats the code with the ruff next to it.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("kenbun_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == "kenbun_client"]:
            del sys.modules[name]


def _api(package: ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


def test_a_generated_client_does_everything(
    generated: ModuleType, live: LiveServer, shop: Shop, world: World
) -> None:
    with ExitStack() as clients:
        _use_the_generated_client(generated, live, shop, world, clients)


def _use_the_generated_client(
    generated: ModuleType, live: LiveServer, shop: Shop, world: World, clients: ExitStack
) -> None:
    """Every operation through the generated client, with both credential kinds:
    choose an org unit, read by cookie and by X-Org-Unit-Id, revalidate to a 304,
    drill into a value with a slash, and read money back exactly."""
    client_module = importlib.import_module("kenbun_client.client")
    models = importlib.import_module("kenbun_client.models")
    list_campaigns = _api(generated, "analytics", "list_campaigns")
    list_campaign_leads = _api(generated, "analytics", "list_campaign_leads")
    list_org_units = _api(generated, "org_units", "list_org_units")
    choose_org_unit = _api(generated, "org_units", "choose_org_unit")
    get_health = _api(generated, "operations", "get_health")
    get_readiness = _api(generated, "operations", "get_readiness")

    def authenticated(authorization: str, **headers: str) -> Any:
        prefix, _, token = authorization.partition(" ")
        made = client_module.AuthenticatedClient(
            base_url=live.base,
            token=token,
            prefix=prefix,
            headers=headers,
            raise_on_unexpected_status=True,
        )
        return clients.enter_context(made)

    anonymous = clients.enter_context(
        client_module.Client(base_url=live.base, raise_on_unexpected_status=True)
    )
    analyst, robot = authenticated(shop.bearer), authenticated(shop.basic)

    # The operations endpoints, without credentials.
    health = get_health.sync(client=anonymous)
    assert health.status == "ok"
    ready = get_readiness.sync_detailed(client=anonymous)
    assert ready.status_code == 200
    assert ready.parsed.ready is True

    # Both credential kinds read their default org unit.
    units = list_org_units.sync(client=analyst)
    assert [(u.name, u.active) for u in units.org_units] == [("Acme", True), ("Beta", False)]
    assert [(u.name, u.active) for u in list_org_units.sync(client=robot).org_units] == [
        ("Acme", True)
    ]
    for reader in (analyst, robot):
        campaigns = list_campaigns.sync(client=reader)
        assert campaigns.group_by == "campaign"
        assert {row.name for row in campaigns.campaigns} == {"spring", "a/b", "50% off"}
    by_source = list_campaigns.sync(client=analyst, group_by=models.ListCampaignsGroupBy.SOURCE)
    assert by_source.group_by == "source"
    assert {row.name for row in by_source.campaigns} == {"news", "ads"}
    windowed = list_campaigns.sync(client=robot, start_date="2026-03-10", end_date="2026-03-10")
    assert {row.name for row in windowed.campaigns} == {"spring", "a/b", "50% off"}
    assert list_campaigns.sync(client=robot, start_date="2026-03-11T00:00:00Z").campaigns == []

    # Money: the generated models hold floats, which cannot hold every numeric(18,2)
    # amount; the raw body read with parse_float=Decimal is exact, as SQL has it.
    response = list_campaigns.sync_detailed(client=analyst)
    spring = next(row for row in response.parsed.campaigns if row.name == "spring")
    assert isinstance(spring.pipeline_value, float)
    assert Decimal(repr(spring.pipeline_value)) != BIG + Decimal("19.99") + Decimal("0.07")
    exact = decimal_json(response.content)["campaigns"]
    assert [from_json(row) for row in exact] == world.reference_campaigns(
        shop.acme, "utm_campaign", None, None
    )
    rows = {row["name"]: row for row in exact}
    assert rows["spring"]["pipeline_value"] == Decimal("1234567890123476.84")
    assert rows["spring"]["closed_won_value"] == Decimal("1234567890123456.85")
    assert rows["a/b"]["pipeline_value"] == BIG + Decimal("19.99")

    # A value with a slash, and one with a percent sign, reach their drilldown.
    for name in ("a/b", "50% off"):
        leads = list_campaign_leads.sync(name, client=analyst)
        assert leads.campaign_name == name
        assert [lead.lead_id for lead in leads.leads] == [shop.lead]
        raw = list_campaign_leads.sync_detailed(name, client=robot)
        assert decimal_json(raw.content)["leads"][0]["deal_amount"] == Decimal("19.99")

    # Totals, a time series and pages of leads (dashboards.md).
    get_campaign_totals = _api(generated, "analytics", "get_campaign_totals")
    get_campaign_timeseries = _api(generated, "analytics", "get_campaign_timeseries")
    totals = get_campaign_totals.sync(client=analyst)
    assert (totals.group_by, totals.totals.values, totals.totals.total_events) == ("campaign", 3, 4)
    assert totals.totals.unique_leads == 2
    news = get_campaign_totals.sync(client=robot, utm_source=["news"], tz="Europe/Berlin")
    assert (news.totals.values, news.totals.total_events, news.totals.unique_leads) == (3, 3, 1)
    weekly = get_campaign_timeseries.sync(
        client=analyst,
        name=["spring", "a/b"],
        tz="Europe/Berlin",
        interval=models.GetCampaignTimeseriesInterval.WEEK,
    )
    assert (weekly.interval, weekly.tz, weekly.buckets) == (
        "week",
        "Europe/Berlin",
        ["2026-03-09T00:00:00+01:00"],
    )
    assert [(s.name, s.total_events) for s in weekly.series] == [("spring", [2]), ("a/b", [1])]
    first_page = list_campaign_leads.sync_detailed("spring", client=robot, limit=1)
    assert first_page.headers["x-total-count"] == "2"
    assert 'rel="next"' in first_page.headers["link"]
    second_page = list_campaign_leads.sync_detailed("spring", client=robot, limit=1, offset=1)
    assert "link" not in second_page.headers
    paged = [*first_page.parsed.leads, *second_page.parsed.leads]
    assert len({lead.lead_id for lead in paged}) == 2

    # Choosing an org unit: the cookie then selects what the analyst reads.
    chosen = choose_org_unit.sync_detailed(
        client=analyst, body=models.ChooseOrgUnitActiveOrgUnitRequest(org_unit_id=shop.beta)
    )
    assert chosen.status_code == 204
    assert chosen.parsed is None
    assert chosen.content == b""
    assert "kenbun_active_ou=" in chosen.headers["set-cookie"]
    assert [row.name for row in list_campaigns.sync(client=analyst).campaigns] == ["beta only"]
    assert [(u.name, u.active) for u in list_org_units.sync(client=analyst).org_units] == [
        ("Acme", False),
        ("Beta", True),
    ]
    # The header outranks the cookie. openapi-python-client 0.29 passes a uuid-format
    # header's UUID object to httpx, which accepts only text: give it the text.
    acme = list_campaigns.sync(client=analyst, x_org_unit_id=shop.acme)
    assert {row.name for row in acme.campaigns} == {"spring", "a/b", "50% off"}
    units = list_org_units.sync(client=analyst, x_org_unit_id=shop.acme)
    assert [(u.name, u.active) for u in units.org_units] == [("Acme", True), ("Beta", False)]
    leads = list_campaign_leads.sync("a/b", client=analyst, x_org_unit_id=shop.acme)
    assert [lead.lead_id for lead in leads.leads] == [shop.lead]

    refused = choose_org_unit.sync_detailed(
        client=robot, body=models.ChooseOrgUnitActiveOrgUnitRequest(org_unit_id=shop.beta)
    )
    assert refused.status_code == 403
    assert refused.parsed.detail == Forbidden().detail
    bad = list_campaigns.sync_detailed(client=robot, start_date="2026-02-30")
    assert bad.status_code == 400
    assert bad.parsed.detail == InvalidDate("start_date").detail

    # Revalidation: the ETag sent back as If-None-Match gives a 304 without a body.
    calls: tuple[Callable[[Any], Any], ...] = (
        lambda c: list_campaigns.sync_detailed(client=c),
        lambda c: list_campaign_leads.sync_detailed("a/b", client=c),
    )
    for call in calls:
        first = call(robot)
        assert first.status_code == 200
        again = call(authenticated(shop.basic, **{"If-None-Match": first.headers["etag"]}))
        assert again.status_code == 304
        assert again.content == b""
        assert again.parsed is None
        assert again.headers["etag"] == first.headers["etag"]


# ------------------------------------------- live answers against the document --


class Checker:
    """openapi-core validation of live answers against the served document, read
    with exact decimals (a float fails ``multipleOf: 0.01`` for 19.99)."""

    def __init__(self, base: str) -> None:
        document = decimal_json(httpx.get(base + DOCUMENT).content)
        self.document = document
        self.openapi = OpenAPI.from_dict(
            document,
            config=Config(extra_media_type_deserializers={"application/json": decimal_json}),
        )
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, response: httpx.Response, pattern: str) -> httpx.Response:
        request = response.request
        url = request.url
        mock_request = MockRequest(
            host_url=f"{url.scheme}://{url.netloc.decode()}",
            method=request.method,
            path=url.raw_path.split(b"?")[0].decode("ascii"),
            path_pattern=pattern,
            args=dict(url.params),
            headers=dict(request.headers),
            data=request.content,
            content_type=request.headers.get("content-type", ""),
        )
        content_type = response.headers.get("content-type", "")
        mock_response = MockResponse(
            data=response.content,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=content_type,
        )
        self.openapi.validate_response(mock_request, mock_response)
        method = request.method.lower()
        operation = self.document["paths"][pattern][method]
        self.seen.add((operation["operationId"], response.status_code))
        declared = operation["responses"][str(response.status_code)]
        if "ErrorBody" in json.dumps(declared):
            examples = declared["content"][JSON]["examples"].values()
            assert response.json() in [example["value"] for example in examples], response.text
        return response


JSON = "application/json"
CAMPAIGNS = "/analytics/campaigns"
LEADS = "/analytics/campaigns/{campaign_name}/leads"
TOTALS = "/analytics/campaigns/totals"
TIMESERIES = "/analytics/campaigns/timeseries"


def test_live_answers_of_every_status_match_the_document(
    shop: Shop, database_url: str, world: World
) -> None:
    """200, 204, 304, 400, 401, 403, 413, 415, 429 and 503, validated by openapi-core
    against the served document; error bodies are among the documented examples."""
    analyst = {"Authorization": shop.bearer}
    robot = {"Authorization": shop.basic}
    leads_of = "/analytics/campaigns/a%2Fb/leads"
    with live_server(make_app(database_url)) as server, httpx.Client(base_url=server.base) as http:
        check = Checker(server.base)
        # Before the first snapshot: 503s.
        check(http.get("/readyz"), "/readyz")
        assert http.get("/readyz").status_code == 503
        for path, pattern in ((CAMPAIGNS, CAMPAIGNS), (leads_of, LEADS)):
            loading = check(http.get(path, headers=analyst), pattern)
            assert loading.status_code == 503
            assert loading.headers["retry-after"] == "5"
        assert server.app.state.refresher.refresh(wait=True)

        for path, pattern in (
            ("/healthz", "/healthz"),
            ("/readyz", "/readyz"),
        ):
            assert check(http.get(path), pattern).status_code == 200
        for headers in (analyst, robot):
            for path, pattern in (
                (CAMPAIGNS, CAMPAIGNS),
                (leads_of, LEADS),
                (TOTALS, TOTALS),
                (TIMESERIES, TIMESERIES),
            ):
                fresh = check(http.get(path, headers=headers), pattern)
                assert fresh.status_code == 200
                stripped = httpx.Response(
                    200, headers={"content-type": JSON}, content=fresh.content
                )
                stripped.request = fresh.request
                with pytest.raises(OpenAPIError, match="ETag"):  # the checker checks headers
                    check(stripped, pattern)
                etag = {**headers, "If-None-Match": fresh.headers["etag"]}
                assert check(http.get(path, headers=etag), pattern).status_code == 304
                bad_date = http.get(path, headers=headers, params={"start_date": "x"})
                assert check(bad_date, pattern).status_code == 400
                for bad in ({}, {"Authorization": "Bearer nope"}):
                    assert check(http.get(path, headers=bad), pattern).status_code == 401
                other = {**headers, "X-Org-Unit-Id": shop.other}
                assert check(http.get(path, headers=other), pattern).status_code == 403
            assert check(http.get("/org-units", headers=headers), "/org-units").status_code == 200
        homeless = {"Authorization": shop.homeless}
        assert check(http.get(CAMPAIGNS, headers=homeless), CAMPAIGNS).status_code == 403
        bad_escape = http.get("/analytics/campaigns/50%/leads", headers=analyst)
        assert check(bad_escape, LEADS).status_code == 400
        twice = [
            ("Authorization", shop.bearer),
            ("X-Org-Unit-Id", shop.acme),
            ("X-Org-Unit-Id", shop.beta),
        ]
        for path, pattern in ((CAMPAIGNS, CAMPAIGNS), ("/org-units", "/org-units")):
            assert check(http.get(path, headers=twice), pattern).status_code == 400
        twice_authorized = [("Authorization", shop.bearer), ("Authorization", shop.basic)]
        repeated = http.get("/org-units", headers=twice_authorized)
        assert check(repeated, "/org-units").status_code == 400
        assert check(http.get("/org-units"), "/org-units").status_code == 401

        active = "/org-units/active"
        for body, content_type, status in (
            ({"org_unit_id": shop.beta}, JSON, 204),
            ({"org_unit_id": shop.other}, JSON, 403),
            ({"org_unit_id": "beta"}, JSON, 400),
            ({"unit": shop.beta}, JSON, 400),
            ({"org_unit_id": shop.beta}, "text/plain", 415),
            ({"org_unit_id": shop.beta + " " * 20_000}, JSON, 413),
        ):
            answer = http.post(
                active,
                content=json.dumps(body).encode(),
                headers={**analyst, "Content-Type": content_type},
            )
            assert check(answer, active).status_code == status, answer.text
        assert check(http.post(active, json={"org_unit_id": shop.beta}), active).status_code == 401

    # A credential whose budget is spent: 429 on every credentialed operation.
    limited = make_app(database_url, rate_limit_per_second=1, rate_limit_burst=1)
    with live_server(limited) as server, httpx.Client(base_url=server.base) as http:
        limit_check = Checker(server.base)
        assert server.app.state.refresher.refresh(wait=True)
        assert http.get("/org-units", headers=robot).status_code == 200
        for answer, pattern in (
            (http.get(CAMPAIGNS, headers=robot), CAMPAIGNS),
            (http.get(leads_of, headers=robot), LEADS),
            (http.get("/org-units", headers=robot), "/org-units"),
            (http.post(active, json={"org_unit_id": shop.acme}, headers=robot), active),
        ):
            assert limit_check(answer, pattern).status_code == 429
            assert answer.headers["retry-after"] == "1"

    statuses = {status for _, status in check.seen | limit_check.seen}
    assert statuses == {200, 204, 304, 400, 401, 403, 413, 415, 429, 503}
    assert {operation for operation, _ in check.seen} == set(OPERATIONS.values())

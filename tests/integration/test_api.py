"""HTTP behaviour: status codes, headers, error bodies, caching and the OpenAPI document."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from support.world import World
from tests.conftest import refresh

Client = TestClient[Litestar]


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit))
    return unit


@pytest.fixture
def headers(world: World, unit: str, client: Client) -> dict[str, str]:
    refresh(client)
    return world.reader(unit)


def assert_error(response: object, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"status", "detail"}
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["detail"]
    for leak in ("Traceback", 'File "', ".py", "SELECT ", "kbn_"):
        assert leak not in response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/analytics/campaigns", "/analytics/campaigns/spring/leads"])
@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("start_date", "2026-02-30"),
        ("start_date", "2026-3-1"),
        ("start_date", "yesterday"),
        ("start_date", "2026-03-01T00:00:00"),
        ("start_date", "2026-03-01T25:00:00Z"),
        ("end_date", "2026-03-01T00:00:00+24:00"),
        ("end_date", "2026-13-01"),
        ("end_date", " "),
        ("end_date", "2026-03-01T23:59:60Z"),
        ("start_date", "0001-01-01T00:00:00+01:00"),
        ("start_date", "2026-03-01\x00"),
        ("end_date", "\uff12\uff10\uff12\uff16-03-01"),  # full-width digits
    ],
)
def test_malformed_dates_are_400_naming_the_parameter(
    client: Client, headers: dict[str, str], path: str, parameter: str, value: str
) -> None:
    """Impossible dates, missing offsets and free text name the parameter and the forms."""
    response = client.get(path, params={parameter: value}, headers=headers)
    assert_error(response, 400, parameter, "YYYY-MM-DD", "RFC 3339")


@pytest.mark.parametrize("path", ["/analytics/campaigns", "/analytics/campaigns/spring/leads"])
@pytest.mark.parametrize(
    ("query", "same_as"),
    [
        ("start_date=&end_date=&group_by=", ""),
        ("start_date=", ""),
        ("end_date", ""),
        ("group_by=source&start_date=&end_date=", "group_by=source"),
        ("start_date=&start_date=2026-03-01", "start_date=2026-03-01"),
        ("end_date=2026-03-31&end_date=&group_by=&group_by=", "end_date=2026-03-31"),
    ],
)
def test_an_empty_parameter_is_an_absent_one(
    client: Client, headers: dict[str, str], path: str, query: str, same_as: str
) -> None:
    """start_date=, end_date= and group_by= (an empty form field) are left out: the
    answer, ETag included, is the one without them, and an empty value does not
    make a parameter repeated."""
    response = client.get(f"{path}?{query}", headers=headers)
    expected = client.get(f"{path}?{same_as}", headers=headers)
    assert response.status_code == expected.status_code == 200, response.text
    assert response.content == expected.content
    assert response.headers["etag"] == expected.headers["etag"]


def test_two_values_of_a_parameter_are_400_empty_ones_aside(
    client: Client, headers: dict[str, str]
) -> None:
    response = client.get(
        "/analytics/campaigns?start_date=&start_date=2026-03-01&start_date=2026-03-02",
        headers=headers,
    )
    assert_error(response, 400, "start_date is given more than once")


def test_start_after_end_is_400(client: Client, headers: dict[str, str]) -> None:
    """A start_date later than the end_date is a 400 that says so."""
    response = client.get(
        "/analytics/campaigns",
        params={"start_date": "2026-03-02", "end_date": "2026-03-01"},
        headers=headers,
    )
    assert_error(response, 400, "start_date", "end_date")
    same_day = client.get(
        "/analytics/campaigns",
        params={"start_date": "2026-03-01", "end_date": "2026-03-01"},
        headers=headers,
    )
    assert same_day.status_code == 200


def test_empty_campaign_name_is_400(client: Client, headers: dict[str, str]) -> None:
    """An empty campaign_name is a 400 with the documented message."""
    assert_error(
        client.get("/analytics/campaigns//leads", headers=headers), 400, "campaign_name is required"
    )
    assert_error(
        client.get("/analytics/campaigns/%FF/leads", headers=headers), 400, "campaign_name"
    )


@pytest.mark.parametrize("value", [".", "..", "...", "spring", "a/b", "leads"])
def test_a_value_is_named_in_the_query_as_well_as_in_the_path(
    world: World, unit: str, client: Client, headers: dict[str, str], value: str
) -> None:
    """/analytics/campaigns/leads?campaign_name=<value> is the drilldown of the value,
    as its path is: the one way to "." and ".." from a browser, whose URLs drop
    those path segments, spelled %2E or not."""
    world.event(unit, campaign=value, lead=world.lead(unit))
    refresh(client)
    in_path = quote(value, safe="").replace(".", "%2E")
    by_path = client.get(f"/analytics/campaigns/{in_path}/leads?group_by=campaign", headers=headers)
    by_query = client.get(
        "/analytics/campaigns/leads",
        params={"campaign_name": value, "group_by": "campaign"},
        headers=headers,
    )
    assert by_path.status_code == by_query.status_code == 200, by_query.text
    assert by_query.json()["campaign_name"] == value
    assert by_query.json()["leads"]
    assert by_query.content == by_path.content
    assert by_query.headers["etag"] == by_path.headers["etag"]


def test_the_query_named_drilldown_needs_one_name(client: Client, headers: dict[str, str]) -> None:
    """Where a browser sends /analytics/campaigns/%2E/leads, the 400 says what to send."""
    for query in ("", "?campaign_name=", "?group_by=source"):
        response = client.get(f"/analytics/campaigns/leads{query}", headers=headers)
        assert_error(response, 400, "campaign_name is required", "?campaign_name=<value>")
    response = client.get(
        "/analytics/campaigns/leads?campaign_name=.&campaign_name=..", headers=headers
    )
    assert_error(response, 400, "campaign_name is given more than once")


def test_unknown_parameters_are_ignored(client: Client, headers: dict[str, str]) -> None:
    """Parameters we do not know change nothing."""
    plain = client.get("/analytics/campaigns", headers=headers)
    extra = client.get("/analytics/campaigns", params={"utm": "x", "limit": "1"}, headers=headers)
    assert extra.status_code == 200
    assert extra.content == plain.content


def test_unknown_paths_and_methods_get_json_errors(client: Client, headers: dict[str, str]) -> None:
    """404 and 405 use the same error body."""
    assert_error(client.get("/nope", headers=headers), 404)
    assert_error(client.get("/analytics/campaigns/spring", headers=headers), 404)
    assert_error(client.delete("/analytics/campaigns", headers=headers), 405)


def test_responses_carry_snapshot_time_etag_and_304(
    client: Client, headers: dict[str, str]
) -> None:
    """Each answer names its snapshot and a strong ETag; If-None-Match gives 304 with no body."""
    response = client.get("/analytics/campaigns", headers=headers)
    assert response.headers["x-snapshot-at"].endswith("Z")
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert "private" in response.headers["cache-control"]
    again = client.get("/analytics/campaigns", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = client.get("/analytics/campaigns", headers={**headers, "If-None-Match": '"other"'})
    assert other.status_code == 200
    assert other.content == response.content


def test_gzip_is_served_from_the_cache_when_accepted(
    world: World, unit: str, client: Client, headers: dict[str, str]
) -> None:
    """Accept-Encoding: gzip gets the cached gzip form with its own ETag; others the identity."""
    import gzip

    for n in range(60):  # a body well over the 1 KiB below which nothing is compressed
        world.event(unit, campaign=f"campaign number {n}")
    refresh(client)
    plain = client.get("/analytics/campaigns", headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept, Accept-Encoding"  # dashboards.md: formats
    with client.stream(
        "GET", "/analytics/campaigns", headers={**headers, "Accept-Encoding": "br, gzip;q=0.5"}
    ) as packed:
        wire = b"".join(packed.iter_raw())
    assert packed.headers["content-encoding"] == "gzip"
    assert wire == gzip.compress(plain.content, compresslevel=6, mtime=0)  # deterministic
    assert len(wire) < len(plain.content) / 3
    assert packed.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
    refused = client.get("/analytics/campaigns", headers={**headers, "Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    again = client.get(
        "/analytics/campaigns",
        headers={**headers, "Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]},
    )
    assert again.status_code == 304
    assert "content-encoding" not in again.headers
    cache = client.app.state.services.cache
    assert cache.size_bytes == sum(e.size for e in cache._entries.values())


def test_same_data_gives_the_same_bytes_across_refreshes(
    client: Client, headers: dict[str, str]
) -> None:
    """Refreshing unchanged data answers byte-identical bodies and the same ETag."""
    first = client.get("/analytics/campaigns/spring/leads", headers=headers)
    client.app.state.refresher.request_full()
    refresh(client)
    second = client.get("/analytics/campaigns/spring/leads", headers=headers)
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]


def test_openapi_documents_both_endpoints(client: Client) -> None:
    """The OpenAPI document describes the endpoints, parameters, responses and errors."""
    document = client.get("/schema/openapi.json").json()
    campaigns = document["paths"]["/analytics/campaigns"]["get"]
    filters = {"utm_campaign", "utm_source", "utm_medium", "tz", "format"}
    assert {p["name"] for p in campaigns["parameters"]} == {
        "group_by",
        "start_date",
        "end_date",
        "X-Org-Unit-Id",
        *filters,
    }
    assert {"200", "400", "401", "403"} <= set(campaigns["responses"])
    leads = document["paths"]["/analytics/campaigns/{campaign_name}/leads"]["get"]
    assert {p["name"] for p in leads["parameters"]} == {
        "campaign_name",
        "group_by",
        "start_date",
        "end_date",
        "X-Org-Unit-Id",
        "limit",
        "offset",
        *filters,
    }
    schemas = document["components"]["schemas"]
    row = next(v for k, v in schemas.items() if k.endswith("CampaignRow"))
    assert row["properties"]["pipeline_value"]["type"] == "number"
    assert not any("{rest" in path for path in document["paths"])


def test_oversized_body_is_413(world: World, unit: str, client: Client) -> None:
    """POST /org-units/active refuses bodies larger than 16 KiB."""
    response = client.post(
        "/org-units/active",
        content=b"{" + b" " * 70000 + b"}",
        headers={**world.reader(unit), "Content-Type": "application/json"},
    )
    assert_error(response, 413)


def test_no_query_string_or_path_produces_a_server_error(
    world: World, unit: str, client: Client
) -> None:
    """Random parameters and path values are answered with 2xx or 4xx, never 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    refresh(client)
    headers = world.reader(unit)
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        group_by=text,
        start_date=text,
        end_date=text,
        name=text,
        raw=st.binary(max_size=30),
    )
    def check(group_by: str, start_date: str, end_date: str, name: str, raw: bytes) -> None:
        from urllib.parse import quote, quote_from_bytes

        params = {"group_by": group_by, "start_date": start_date, "end_date": end_date}
        for path in (
            "/analytics/campaigns",
            f"/analytics/campaigns/{quote(name, safe='')}/leads",
            f"/analytics/campaigns/{quote_from_bytes(raw, safe='')}/leads",
        ):
            response = client.get(path, params=params, headers=headers)
            assert response.status_code < 500, (path, params, response.text)
            assert response.headers["content-type"].startswith("application/json")

    check()

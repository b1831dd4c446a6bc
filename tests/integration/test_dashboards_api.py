"""The dashboards API over HTTP (dashboards.md): filters, tz, totals, time series,
pages of leads and CSV/Arrow answers, against straight SQL on random worlds
(the strategies of ``test_dashboards_engine``) and on a fixed world."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import duckdb
import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.engine import queries
from kenbun_analytics.engine.wire import json_array
from kenbun_analytics.engine.zones import bucket_label, bucket_starts
from kenbun_analytics.web import hits
from kenbun_analytics.web.guard import MAX_QUERY_BYTES
from kenbun_analytics.web.schemas import CampaignsEnvelope, LeadsEnvelope, json_encoder
from support.world import LEAD_FIELDS, SERIES_FIELDS, World, from_json, rfc3339
from tests.conftest import refresh
from tests.integration.test_dashboards_engine import (
    Query,
    Spec,
    bound,
    queries_of,
    specs,
    write,
)

Client = TestClient[Litestar]
Params = list[tuple[str, str]]
CSV_TYPE = "text/csv; charset=utf-8"
ARROW_TYPE = "application/vnd.apache.arrow.stream"
AGGREGATE = "/analytics/campaigns"
TOTALS = "/analytics/campaigns/totals"
TIMESERIES = "/analytics/campaigns/timeseries"
EXAMPLES = 8
"""Random worlds through HTTP (each writes to PostgreSQL and refreshes the app)."""


def decimal_json(text: bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def leads_path(name: str) -> str:
    return "/analytics/campaigns/" + quote(name, safe="") + "/leads"


def query_params(query: Query) -> Params:
    """The request's parameters: the query's window, zone, grouping and filters."""
    params: Params = [("group_by", query.group_by)]
    if query.tz != "UTC" or query.start is None:
        params.append(("tz", query.tz))
    for name, value in (("start_date", query.start), ("end_date", query.end)):
        if isinstance(value, (datetime, date)):
            params.append((name, value.isoformat()))
    for key, values in query.filters.items():
        params += [(f"utm_{key}", value) for value in values]
    return params


def get_json(client: Client, path: str, params: Params, headers: dict[str, str]) -> Any:
    response = client.get(path, params=tuple(params), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return decimal_json(response.content)


def check_http(
    client: Client, world: World, unit: str, headers: dict[str, str], query: Query
) -> None:
    start = bound(world, query.start, query.tz, end=False)
    end = bound(world, query.end, query.tz, end=True)
    if start is not None and end is not None and start > end:
        # start_date after end_date is a 400: ask with the bounds the other way round.
        query = Query(**{**query.__dict__, "start": query.end, "end": query.start})
        start = bound(world, query.start, query.tz, end=False)
        end = bound(world, query.end, query.tz, end=True)
    params = query_params(query)
    key = f"utm_{query.group_by}"

    expected = world.reference_filtered_campaigns(unit, key, start, end, query.filters)
    body = get_json(client, AGGREGATE, params, headers)
    assert list(body) == ["group_by", "campaigns"]
    assert [from_json(row) for row in body["campaigns"]] == expected

    totals = get_json(client, TOTALS, params, headers)
    assert list(totals) == ["group_by", "totals"]
    assert totals["group_by"] == query.group_by
    assert from_json(totals["totals"]) == world.reference_totals(
        unit, key, start, end, query.filters
    )

    names = [] if query.names is None else query.names
    series_params = params + [("interval", query.interval)] + [("name", n) for n in names]
    series = get_json(client, TIMESERIES, series_params, headers)
    assert list(series) == ["group_by", "interval", "tz", "buckets", "series"]
    assert (series["group_by"], series["interval"], series["tz"]) == (
        query.group_by,
        query.interval,
        query.tz,
    )
    first = start or (min(r["first_event_at"] for r in expected) if expected else None)
    last = end or (max(r["last_event_at"] for r in expected) if expected else None)
    zone = ZoneInfo(query.tz)
    starts = (
        []
        if first is None or last is None
        else bucket_starts(
            zone,
            query.interval,
            first if isinstance(first, datetime) else datetime.fromisoformat(first),
            last if isinstance(last, datetime) else datetime.fromisoformat(last),
        )
    )
    assert series["buckets"] == [bucket_label(s, query.tz) for s in starts]
    # Empty names are ignored, so names that are all empty chart as no names do.
    given = list(dict.fromkeys(n for n in names if n))
    charted = given or [row["name"] for row in expected[:10]]
    assert [s["name"] for s in series["series"]] == charted
    reference = world.reference_timeseries(
        unit, key, start, end, query.filters, query.tz, query.interval
    )
    for entry in series["series"]:
        for index, label in enumerate(series["buckets"]):
            got = {field: entry[field][index] for field in SERIES_FIELDS}
            wanted = reference.get((entry["name"], label[:10]), dict.fromkeys(SERIES_FIELDS, 0))
            assert from_json(got) == wanted, (entry["name"], label)

    for name in [*(row["name"] for row in expected[:2]), "nope"]:
        check_pages(client, world, unit, headers, query, params, (start, end), name)


def check_pages(
    client: Client,
    world: World,
    unit: str,
    headers: dict[str, str],
    query: Query,
    params: Params,
    window: tuple[datetime | None, datetime | None],
    name: str,
) -> None:
    """Pages of 2 leads, followed by their Link headers to the end, give the
    reference's leads in order; X-Total-Count is the number of leads."""
    start, end = window
    key = f"utm_{query.group_by}"
    everyone, total = world.reference_lead_page(unit, key, name, start, end, query.filters, 0, 500)
    url: str | None = leads_path(name)
    page_params: Params | None = [*params, ("limit", "2")]
    seen: list[dict[str, Any]] = []
    while url is not None:
        response = client.get(
            url, params=None if page_params is None else tuple(page_params), headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == str(total)
        body = decimal_json(response.content)
        assert list(body) == ["campaign_name", "leads"]
        assert body["campaign_name"] == name
        seen += [from_json(lead) for lead in body["leads"]]
        link = response.headers.get("link")
        if link is None:
            url = None
        else:
            match = re.fullmatch(r'<([^>]*)>; rel="next"', link)
            assert match, link
            url, page_params = match.group(1), None
            assert "offset=" in url
            assert "limit=2" in url
    assert seen == everyone


@pytest.fixture
def http_world(database_url: str) -> Any:
    with World.connect(database_url) as world:
        yield world


def test_dashboards_over_http_equal_straight_sql_on_random_worlds(
    client: Client, http_world: World
) -> None:
    """Aggregate, totals, time series and pages of leads through HTTP, with filters
    (values needing escapes, the grouped key too), zones with date bounds and every
    interval, equal the straight-SQL references."""
    world = http_world

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(spec=specs(), data=st.data())
    def check(spec: Spec, data: st.DataObject) -> None:
        unit = write(world, spec)
        client.app.state.refresher.request_full()
        refresh(client)
        headers = world.reader(unit)
        for _ in range(3):
            check_http(client, world, unit, headers, data.draw(queries_of(spec)))

    check()


# -------------------------------------------------------- a fixed world --

NAMES = ["spring", "a/b", "50% off", "c+d", "two words", "日本語", "q?x#y", '=1+2,"x"']


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    account = world.account(unit, 'Big, "Co"')
    world.deal(unit, account, amount="485000.00", stage="closed_won")
    world.deal(unit, account, amount="1234.50", stage="negotiation")
    for n, name in enumerate(NAMES):
        for k in range(n + 1):
            lead = world.lead(unit, account=account if k == 0 else None, level="Hot")
            world.alias(unit, lead, "email", f"l{n}-{k}@example.com", primary=True)
            world.event(
                unit,
                lead=lead,
                campaign=name,
                source="c+d" if k % 2 else "two words",
                medium="cpc",
                occurred_at=f"2026-03-{10 + k:02d}T23:30:00.{k:06d}Z",
            )
    return unit


@pytest.fixture
def headers(world: World, unit: str, client: Client) -> dict[str, str]:
    refresh(client)
    return world.reader(unit)


def test_routes_are_distinct_from_the_drilldown(
    world: World, unit: str, client: Client, headers: dict[str, str]
) -> None:
    """totals and timeseries are their own paths; values so named keep their drilldown."""
    for name in ("totals", "timeseries"):
        lead = world.lead(unit)
        world.event(unit, lead=lead, campaign=name)
    refresh(client)
    assert list(get_json(client, TOTALS, [], headers)) == ["group_by", "totals"]
    assert next(iter(get_json(client, TIMESERIES, [], headers))) == "group_by"
    for name in ("totals", "timeseries"):
        body = get_json(client, leads_path(name), [], headers)
        assert body["campaign_name"] == name
        assert len(body["leads"]) == 1
    assert client.get("/analytics/campaigns/spring", headers=headers).status_code == 404


def test_without_new_parameters_answers_are_todays(
    client: Client, headers: dict[str, str], unit: str
) -> None:
    """No new parameter: the bodies are those of today's queries, byte for byte, with
    today's headers (Vary now names Accept, as the contract asks)."""
    snapshot = client.app.state.services.store.get(unit)
    layout = snapshot.layout
    rows = queries.campaign_rows(layout, group_by="campaign", lo=0, hi=len(layout.times))
    today = json_encoder.encode(
        CampaignsEnvelope(group_by="campaign", campaigns=msgspec.Raw(json_array(rows.collect())))
    )
    response = client.get(AGGREGATE, headers=headers)
    assert response.content == today
    assert set(response.headers) >= {"etag", "x-snapshot-at", "cache-control", "vary"}
    assert "x-total-count" not in response.headers
    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept, Accept-Encoding"
    for name in NAMES:
        code = layout.codes["campaign"].get(name)
        leads = queries.campaign_leads(
            layout, rows=layout.rows_of("campaign", code, 0, len(layout.times))
        )
        today = json_encoder.encode(
            LeadsEnvelope(campaign_name=name, leads=msgspec.Raw(json_array(leads)))
        )
        answer = client.get(leads_path(name), headers=headers)
        assert answer.content == today
        assert "link" not in answer.headers
    # Empty new parameters are no parameters.
    empty = [(name, "") for name in ("utm_campaign", "utm_source", "tz", "format", "limit")]
    again = client.get(AGGREGATE, params=tuple(empty), headers=headers)
    assert again.content == response.content
    assert again.headers["etag"] == response.headers["etag"]


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.headers["content-type"] == CSV_TYPE
    assert not response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # every line ends with CRLF
    return list(csv.DictReader(io.StringIO(text, newline="")))


def cell(value: Any) -> str:
    return "" if value is None else str(value)


def arrow_table(response: Any) -> pa.Table:
    assert response.headers["content-type"] == ARROW_TYPE
    table = pyarrow.ipc.open_stream(response.content).read_all()
    frame = pl.read_ipc_stream(response.content)
    assert frame.columns == table.column_names
    assert frame.height == table.num_rows
    stream = pa.ipc.open_stream(response.content)
    assert duckdb.from_arrow(stream).aggregate("count(*)").fetchall() == [(table.num_rows,)]
    return table


ARROW_TYPES = {
    "int": pa.int64(),
    "money": pa.decimal128(38, 2),
    "time": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
}


def kind(name: str) -> str:
    if name in {"pipeline_value", "closed_won_value", "deal_amount"}:
        return "money"
    if name.endswith("_at") or name == "bucket_start":
        return "time"
    if name in {*SERIES_FIELDS, "values", "score"} - {"pipeline_value", "closed_won_value"}:
        return "int"
    return "text"


def arrow_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Decimal):
        return value.normalize() if value else Decimal(0)
    return value


def json_value(name: str, value: Any) -> Any:
    """A JSON cell as the Arrow one reads: a bucket start as its instant (UTC)."""
    if name == "bucket_start":
        return rfc3339(datetime.fromisoformat(value))
    if isinstance(value, Decimal):
        return value.normalize() if value else Decimal(0)
    return value


def tabular(path: str, body: Any) -> list[dict[str, Any]]:
    """The JSON answer as the rows of its CSV and Arrow forms."""
    if path == AGGREGATE:
        return list(body["campaigns"])
    if path == TOTALS:
        return [body["totals"]]
    if path == TIMESERIES:
        return [
            {
                "name": entry["name"],
                "bucket_start": label,
                **{field: entry[field][index] for field in SERIES_FIELDS},
            }
            for entry in body["series"]
            for index, label in enumerate(body["buckets"])
        ]
    return list(body["leads"])


CASES = [
    (AGGREGATE, [("utm_source", "c+d"), ("utm_source", "two words")]),
    (AGGREGATE, [("group_by", "source")]),
    (TOTALS, [("utm_medium", "cpc")]),
    (TOTALS, [("start_date", "2099-01-01")]),
    (TIMESERIES, [("tz", "America/New_York"), ("name", "50% off"), ("name", "a/b")]),
    (TIMESERIES, [("interval", "week"), ("tz", "Australia/Lord_Howe")]),
    (leads_path("日本語"), [("limit", "3"), ("offset", "1")]),
    (leads_path('=1+2,"x"'), []),
]


@pytest.mark.parametrize(("path", "params"), CASES)
def test_csv_and_arrow_hold_the_json_rows(
    client: Client, headers: dict[str, str], path: str, params: Params
) -> None:
    """CSV (read back with the csv module) and Arrow (pyarrow, Polars, DuckDB) hold the
    JSON's rows and columns, in its order; money, times and NULLs as the contract says;
    each format has its own ETag, and the drilldown's X-Total-Count in each."""
    plain = client.get(path, params=tuple(params), headers=headers)
    assert plain.status_code == 200
    rows = tabular(path, decimal_json(plain.content))
    as_csv = client.get(path, params=[*params, ("format", "csv")], headers=headers)
    as_arrow = client.get(
        path, params=tuple(params), headers={**headers, "Accept": f"text/csv;q=0.5, {ARROW_TYPE}"}
    )
    assert as_arrow.status_code == as_csv.status_code == 200
    got = csv_rows(as_csv)
    header = as_csv.content.split(b"\r\n", 1)[0].decode()
    if rows:
        assert header.split(",") == list(rows[0])
    assert got == [{name: cell(value) for name, value in row.items()} for row in rows]
    table = arrow_table(as_arrow)
    if rows:
        assert table.column_names == list(rows[0])
    for field in table.schema:
        assert field.type == ARROW_TYPES[kind(field.name)], field
    arrow_rows = [{k: arrow_value(v) for k, v in row.items()} for row in table.to_pylist()]
    assert arrow_rows == [{k: json_value(k, v) for k, v in row.items()} for row in rows]
    etags = {r.headers["etag"] for r in (plain, as_csv, as_arrow)}
    assert len(etags) == 3
    for response in (plain, as_csv, as_arrow):
        assert response.headers["vary"] == "Accept, Accept-Encoding"
        assert response.headers["x-snapshot-at"].endswith("Z")
        if "/leads" in path:
            assert response.headers["x-total-count"] == plain.headers["x-total-count"]
    # A JSON ETag sent back on a CSV request gets the CSV; its own gets a 304.
    crossed = client.get(
        path,
        params=[*params, ("format", "csv")],
        headers={**headers, "If-None-Match": plain.headers["etag"]},
    )
    assert crossed.status_code == 200
    assert crossed.content == as_csv.content
    revalidated = client.get(
        path,
        params=[*params, ("format", "csv")],
        headers={**headers, "If-None-Match": as_csv.headers["etag"]},
    )
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    if "/leads" in path:
        assert revalidated.headers["x-total-count"] == plain.headers["x-total-count"]


def test_money_and_times_in_csv_are_the_json_texts(client: Client, headers: dict[str, str]) -> None:
    """485000 and 1234.5 as in the JSON, microseconds kept, an account name with a comma
    and quotes quoted, a formula-like value exact."""
    totals = client.get(TOTALS, params={"format": "csv"}, headers=headers).content.decode()
    assert ",486234.5,485000," in totals
    leads = client.get(leads_path('=1+2,"x"'), params={"format": "csv"}, headers=headers)
    text = leads.content.decode()
    assert '"Big, ""Co"""' in text
    assert ",485000," not in text or ",1234.5," in text  # the latest deal's amount
    assert "2026-03-17T23:30:00.000007Z" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    aggregate = client.get(AGGREGATE, params={"format": "csv"}, headers=headers).content.decode()
    assert '"=1+2,""x""",8,' in aggregate
    assert rows[0][0] == "lead_id"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/html", "application/json"),
        ("text/csv", CSV_TYPE),
        ("text/csv, */*", CSV_TYPE),
        ("text/csv;q=0.4, application/json;q=0.5", "application/json"),
        ("application/json;q=0.5, text/csv;q=0.9", CSV_TYPE),
        (f"{ARROW_TYPE};q=0.8, text/csv;q=0.7", ARROW_TYPE),
        ("text/csv;q=0", "application/json"),
        ("TEXT/CSV; charset=utf-8", CSV_TYPE),
    ],
)
def test_accept_negotiation(
    client: Client, headers: dict[str, str], accept: str | None, expected: str
) -> None:
    """q-values are honoured; */*, anything else, or no header is JSON; format= wins."""
    extra = {} if accept is None else {"Accept": accept}
    for path in (AGGREGATE, TOTALS, TIMESERIES, leads_path("spring")):
        response = client.get(path, headers={**headers, **extra})
        assert response.headers["content-type"] == expected, path
        forced = client.get(path, params={"format": "json"}, headers={**headers, **extra})
        assert forced.headers["content-type"] == "application/json"


def test_the_pre_routing_layer_leaves_csv_and_arrow_to_the_app(
    client: Client, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached JSON aggregate is not sent to a request that asks for CSV or Arrow by
    Accept, nor to one with a new parameter."""
    answered: list[bool] = []
    original = hits._answer

    def spy(scope: dict[str, Any], services: Any) -> Any:
        answer = original(scope, services)
        answered.append(answer is not None)
        return answer

    monkeypatch.setattr(hits, "_answer", spy)
    plain = client.get(AGGREGATE, headers=headers)
    assert client.get(AGGREGATE, headers=headers).content == plain.content
    as_csv = client.get(AGGREGATE, headers={**headers, "Accept": "text/csv"})
    assert as_csv.headers["content-type"] == CSV_TYPE
    as_arrow = client.get(AGGREGATE, headers={**headers, "Accept": ARROW_TYPE})
    assert as_arrow.headers["content-type"] == ARROW_TYPE
    json_accept = client.get(AGGREGATE, headers={**headers, "Accept": "application/json"})
    assert json_accept.content == plain.content
    filtered = client.get(AGGREGATE + "?utm_source=news", headers=headers)
    assert filtered.status_code == 200
    assert client.get(AGGREGATE + "?tz=UTC", headers=headers).content == plain.content
    assert answered == [False, True, False, False, True, False, False]


def test_filters_decode_once_and_plus_is_a_space(client: Client, headers: dict[str, str]) -> None:
    """%2B is '+', a literal '+' a space; a filter on the grouped key keeps its rows."""
    by_source = client.get(AGGREGATE + "?group_by=source&utm_source=c%2Bd", headers=headers)
    assert [row["name"] for row in by_source.json()["campaigns"]] == ["c+d"]
    spaced = client.get(AGGREGATE + "?group_by=source&utm_source=two+words", headers=headers)
    assert [row["name"] for row in spaced.json()["campaigns"]] == ["two words"]
    both = client.get(
        AGGREGATE + "?utm_campaign=a%2Fb&utm_campaign=50%25%20off&utm_campaign=", headers=headers
    )
    assert [row["name"] for row in both.json()["campaigns"]] == ["50% off", "a/b"]
    nothing = client.get(AGGREGATE + "?utm_source=", headers=headers)
    assert nothing.content == client.get(AGGREGATE, headers=headers).content


def test_date_bounds_are_days_in_the_zone(client: Client, headers: dict[str, str]) -> None:
    """Events at 23:30 UTC fall on the next day in Berlin and Kolkata, the same in New York;
    an RFC 3339 bound ignores tz."""

    def names(params: Params) -> int:
        body = get_json(client, TOTALS, params, headers)
        return int(body["totals"]["total_events"])

    day = [("start_date", "2026-03-11"), ("end_date", "2026-03-11")]
    assert names(day) == 7  # 23:30 UTC on the 11th
    assert names([*day, ("tz", "America/New_York")]) == 7
    assert names([*day, ("tz", "Europe/Berlin")]) == 8  # 23:30 UTC on the 10th
    assert names([*day, ("tz", "Asia/Kolkata")]) == 8
    assert names([*day, ("tz", "US/Eastern")]) == 7
    instant = [("start_date", "2026-03-11T00:00:00Z"), ("end_date", "2026-03-11T23:59:59Z")]
    assert names(instant) == names([*instant, ("tz", "Asia/Kolkata")]) == 7


def test_time_series_buckets_and_errors(client: Client, headers: dict[str, str]) -> None:
    """Bucket labels carry the offset in force ('Z' only for UTC); an empty window has no
    buckets and empty lists; more than 1000 buckets is a 400 that says what to do."""
    utc = get_json(client, TIMESERIES, [("name", "spring")], headers)
    days = [f"2026-03-{day}T00:00:00" for day in range(10, 18)]
    assert utc["buckets"] == [day + "Z" for day in days]  # the events of every value
    assert utc["series"][0]["total_events"] == [1, 0, 0, 0, 0, 0, 0, 0]
    zero = get_json(client, TIMESERIES, [("tz", "Etc/UTC"), ("name", "spring")], headers)
    assert zero["buckets"] == [day + "+00:00" for day in days]
    berlin = get_json(client, TIMESERIES, [("tz", "Europe/Berlin"), ("interval", "month")], headers)
    assert berlin["buckets"] == ["2026-03-01T00:00:00+01:00"]
    assert [s["name"] for s in berlin["series"]] == list(reversed(NAMES))
    only_empty = [("tz", "Europe/Berlin"), ("interval", "month"), ("name", ""), ("name", "")]
    assert get_json(client, TIMESERIES, only_empty, headers) == berlin  # as if no names
    empty = get_json(
        client,
        TIMESERIES,
        [("start_date", "2099-01-01"), ("name", "spring"), ("name", "x")],
        headers,
    )
    assert empty["buckets"] == []
    assert [s["name"] for s in empty["series"]] == ["spring", "x"]
    assert all(s[field] == [] for s in empty["series"] for field in SERIES_FIELDS)
    many = client.get(
        TIMESERIES, params={"start_date": "2020-01-01", "end_date": "2026-01-01"}, headers=headers
    )
    assert many.status_code == 400
    assert "narrow the window" in many.json()["detail"]
    assert "longer interval" in many.json()["detail"]
    weeks = client.get(
        TIMESERIES,
        params={"start_date": "2020-01-01", "end_date": "2026-01-01", "interval": "week"},
        headers=headers,
    )
    assert weeks.status_code == 200
    assert len(weeks.json()["buckets"]) == 314


BAD = [
    (AGGREGATE, "tz", "+01:00"),
    (AGGREGATE, "tz", "Mars/Olympus"),
    (AGGREGATE, "tz", "../etc/passwd"),
    (AGGREGATE, "tz", "europe/berlin"),
    (TOTALS, "tz", "/usr/share/zoneinfo/UTC"),
    (TOTALS, "format", "CSV"),
    (TOTALS, "format", "xml"),
    (TIMESERIES, "interval", "year"),
    (TIMESERIES, "interval", "Day"),
    (leads_path("spring"), "limit", "0"),
    (leads_path("spring"), "limit", "501"),
    (leads_path("spring"), "limit", "1.5"),
    (leads_path("spring"), "limit", "-1"),
    (leads_path("spring"), "offset", "-1"),
    (leads_path("spring"), "offset", "x"),
    (leads_path("spring"), "offset", "+1"),
]


@pytest.mark.parametrize(("path", "parameter", "value"), BAD)
def test_bad_parameters_are_400_naming_them(
    client: Client, headers: dict[str, str], path: str, parameter: str, value: str
) -> None:
    """Each malformed new parameter is a JSON 400 naming it, whatever the format asked."""
    for accept in ("application/json", "text/csv"):
        response = client.get(
            path, params={parameter: value}, headers={**headers, "Accept": accept}
        )
        assert response.status_code == 400, (parameter, value)
        assert response.headers["content-type"] == "application/json"
        assert parameter in response.json()["detail"]


@pytest.mark.parametrize("parameter", ["tz", "interval", "format"])
def test_repeated_single_parameters_are_400(
    client: Client, headers: dict[str, str], parameter: str
) -> None:
    value = {"tz": "UTC", "interval": "day", "format": "json"}[parameter]
    response = client.get(
        TIMESERIES, params=[(parameter, value), (parameter, value)], headers=headers
    )
    assert response.status_code == 400
    assert parameter in response.json()["detail"]


def test_too_many_filter_values_or_names_are_400(client: Client, headers: dict[str, str]) -> None:
    many = [("utm_source", f"s{n}") for n in range(101)]
    response = client.get(AGGREGATE, params=tuple(many), headers=headers)
    assert response.status_code == 400
    assert "utm_source" in response.json()["detail"]
    hundred = client.get(AGGREGATE, params=[*many[:100], ("utm_source", "s0")], headers=headers)
    assert hundred.status_code == 200
    names = [("name", f"n{n}") for n in range(21)]
    response = client.get(TIMESERIES, params=tuple(names), headers=headers)
    assert response.status_code == 400
    assert "name" in response.json()["detail"]
    assert (
        client.get(TIMESERIES, params=[*names[:20], ("name", "")], headers=headers).status_code
        == 200
    )


def test_a_dashboards_full_filter_list_fits_the_query_string(
    client: Client, headers: dict[str, str]
) -> None:
    """A hundred long, percent-encoded campaign values (over 6 KiB) are a filter,
    not a 414: the guard's bound leaves room for the most values a filter takes."""
    many = [("utm_campaign", f"日本語 quarterly campaign {n:03d}") for n in range(99)]
    params: Params = [*many, ("utm_campaign", "日本語")]
    request = client.build_request("GET", AGGREGATE, params=tuple(params))
    assert 6 * 1024 < len(request.url.query) < MAX_QUERY_BYTES
    body = get_json(client, AGGREGATE, params, headers)
    assert [row["name"] for row in body["campaigns"]] == ["日本語"]
    too_long: Params = [*params, ("utm_source", "x" * MAX_QUERY_BYTES)]
    response = client.get(AGGREGATE, params=tuple(too_long), headers=headers)
    assert response.status_code == 414
    assert "filter values" in response.json()["detail"]


def test_link_keeps_the_other_parameters(client: Client, headers: dict[str, str]) -> None:
    """The next page's Link keeps the raw path and the other parameters as sent."""
    path = leads_path("日本語")
    response = client.get(
        path + "?utm_source=two+words&utm_source=c%2Bd&limit=2&tz=Europe%2FBerlin",
        headers=headers,
    )
    assert response.headers["x-total-count"] == "6"
    link = response.headers["link"]
    assert link == (
        f"<{path}?offset=2&limit=2&utm_source=two+words&utm_source=c%2Bd&tz=Europe%2FBerlin>; "
        'rel="next"'
    )
    last = client.get(path + "?offset=4&limit=2", headers=headers)
    assert "link" not in last.headers
    assert len(last.json()["leads"]) == 2
    beyond = client.get(path + "?offset=40", headers=headers)
    assert beyond.json()["leads"] == []
    assert beyond.headers["x-total-count"] == "6"
    assert tuple(json.loads(response.content)["leads"][0]) == LEAD_FIELDS

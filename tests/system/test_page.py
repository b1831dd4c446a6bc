"""The Campaigns page in a real headless Chromium, against a real server and seeded data.

The numbers on the page must equal the API's JSON for the same request.
Screenshots at laptop and phone widths are written to docs/screenshots.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, ViewportSize, expect, sync_playwright

from kenbun_analytics.local import admin
from kenbun_analytics.local.embedded import free_port
from kenbun_analytics.local.seed import seed_world
from kenbun_analytics.settings import Settings
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.web.app import STATIC, create_app
from support.world import World

SCREENSHOTS = os.environ.get("KENBUN_SCREENSHOTS_DIR")
"""Where the screenshots go when asked for (``make screenshots``: docs/screenshots);
else a temporary directory, so a test run leaves the tree as it was."""
ODD_VALUES = ('=HYPERLINK("http://x")', "-5% off", "@team", "+plus", ".", "..", "...")
"""Values of an org unit of their own: formulas to a spreadsheet, and dot segments to a URL."""
BIG_CAMPAIGN = "Big webinar"
BIG_LEADS = 1100
"""A campaign of an org unit of its own with more leads than one page of the drilldown (500)."""
DEAL_AMOUNT = "176393.10"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site(server_url: str) -> Iterator[dict[str, Any]]:
    """A seeded database, a token of an owner of every org unit, and the service on a port."""
    import psycopg

    name = "kenbun_page_test"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name} TEMPLATE kenbun_test_template")
    url = server_url.rsplit("/", 1)[0] + "/" + name
    source = Source(url)
    result = seed_world(source, events=4000, seed=7)
    admin.create_user(source, "page@example.com", result.org_unit_ids[1])
    with World.connect(url) as world:
        odd = world.org_unit("Odd names")
        yesterday = datetime.now(UTC) - timedelta(days=1)
        for value in ODD_VALUES:
            lead = world.lead(odd, score=-5, metadata={"title": "=1+1"})
            world.alias(odd, lead, "phone", "+1 555 0100")
            world.event(odd, lead=lead, campaign=value, occurred_at=yesterday)
        big = world.org_unit("Webinars")
        account = world.account(big)
        world.deal(big, account, amount=DEAL_AMOUNT, stage="closed_won")
        world.sql(
            "INSERT INTO leads (id, org_unit_id, account_id, score, metadata) "
            "SELECT gen_random_uuid(), %s, CASE WHEN n <= 10 THEN %s::uuid END, n, "
            "jsonb_build_object('first_name', 'Lead ' || n) FROM generate_series(1, %s) AS n",
            (big, account, BIG_LEADS),
        )
        world.sql(
            "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata) "
            "SELECT org_unit_id, id, 'page_view', %s - make_interval(mins => score * 37 %% 4000), "
            "jsonb_build_object('utm_campaign', %s::text, 'utm_source', 'newsletter', "
            "'utm_medium', 'email') FROM leads WHERE org_unit_id = %s",
            (yesterday, BIG_CAMPAIGN, big),
        )
    for unit in [*result.org_unit_ids, odd, big]:
        admin.add_membership(source, "page@example.com", unit, "owner")
    token = admin.create_token(source, "page@example.com", "page").secret
    source.close()

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(database_url=url, refresh_seconds=3600)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.2)
    try:
        yield {"base": base, "token": token, "units": result.org_unit_ids, "odd": odd, "big": big}
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A page waits on a real server and PostgreSQL: on a loaded two-core machine a
    # view can take longer than Playwright's 5 s default to settle.
    expect.set_options(timeout=15_000)
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860},
        locale="en-US",
        timezone_id="UTC",
        accept_downloads=True,
    )
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def api_response(
    site: dict[str, Any], path: str, unit: str, **params: str | list[str]
) -> httpx.Response:
    response = httpx.get(
        site["base"] + path,
        params=params,
        headers={"Authorization": f"Bearer {site['token']}", "X-Org-Unit-Id": unit},
    )
    assert response.status_code == 200, response.text
    return response


def api(site: dict[str, Any], path: str, unit: str, **params: str | list[str]) -> Any:
    """The API's JSON, money as Decimal (its exact text)."""
    return json.loads(api_response(site, path, unit, **params).text, parse_float=Decimal)


def last_days(days: int, tz: str = "UTC") -> dict[str, str]:
    """The window "last ``days`` days" in ``tz``, as the page asks for it."""
    today = datetime.now(ZoneInfo(tz)).date()
    return {
        "start_date": (today - timedelta(days=days - 1)).isoformat(),
        "end_date": today.isoformat(),
    }


def table(page: Page, body: str = "#table-body") -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{body} tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    return rows


def number(text: str) -> int:
    return int(text.replace(",", ""))


def names_and_events(page: Page) -> list[tuple[str, int]]:
    return [(row[0].removesuffix("drift").rstrip("\n"), number(row[1])) for row in table(page)]


def eventually(page: Page, read: Callable[[Page], object], wanted: object) -> None:
    """``read(page)`` comes to equal ``wanted``. Polled rather than read once after a
    row count: the view before a change can have as many rows (the same sources
    over another window) and still be on the page."""
    deadline = time.monotonic() + 15
    while (shown := read(page)) != wanted and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert shown == wanted


def sign_in(page: Page, site: dict[str, Any]) -> None:
    page.goto(site["base"] + "/campaigns")
    page.fill("#token", site["token"])
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#table-body tr").first).to_be_visible()


def test_a_marketer_explores_campaigns(page: Page, site: dict[str, Any]) -> None:
    """Sign in, choose an org unit, group, window, sort, filter, drill down, download; numbers match the API."""
    sign_in(page, site)
    large = site["units"][0]
    page.select_option("#org-unit", large)
    expect(page.locator("#org-unit")).to_have_value(large)
    expect(page.locator("#freshness")).to_contain_text("data as of")

    def expect_rows_match(group_by: str, days: int) -> None:
        expected = api(site, "/analytics/campaigns", large, group_by=group_by, **last_days(days))[
            "campaigns"
        ]
        eventually(page, names_and_events, [(row["name"], row["total_events"]) for row in expected])

    expect_rows_match("campaign", 30)
    page.select_option("#group-by", "source")
    expect(page).to_have_url(re.compile(r"group_by=source"))
    expect_rows_match("source", 30)
    page.select_option("#window", "90")
    expect_rows_match("source", 90)

    page.click("button.sort[data-key=unique_leads]")
    leads = [number(row[2]) for row in table(page)]
    assert leads == sorted(leads, reverse=True)
    page.click("button.sort[data-key=unique_leads]")
    leads = [number(row[2]) for row in table(page)]
    assert leads == sorted(leads)

    page.fill("#filter", "link")
    names = [row[0] for row in table(page)]
    assert names
    assert all("link" in name.lower() for name in names)
    page.fill("#filter", "")

    with page.expect_download() as download:
        page.click("#download")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    expected = api(site, "/analytics/campaigns", large, group_by="source", **last_days(90))[
        "campaigns"
    ]
    assert {row["name"]: int(row["total_events"]) for row in rows} == {
        r["name"]: r["total_events"] for r in expected
    }

    top = expected[0]["name"]
    page.click(f"button.row-link[data-value='{top}']")
    expect(page.locator("#drilldown")).to_be_visible()
    expected_leads = api(
        site, f"/analytics/campaigns/{top}/leads", large, group_by="source", **last_days(90)
    )["leads"]
    page.wait_for_function(
        "n => document.querySelectorAll('#drill-body tr').length === n", arg=len(expected_leads)
    )
    assert [row[13] for row in table(page, "#drill-body")] == [
        lead["lead_id"] for lead in expected_leads
    ]
    with page.expect_download() as download:
        page.click("#drill-download")
    assert len(list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))) == len(
        expected_leads
    )
    page.click("#back")
    expect(page.locator("#overview")).to_be_visible()


def test_the_url_holds_the_view(page: Page, site: dict[str, Any]) -> None:
    """A bookmarked URL reopens the same grouping, window, sort and filter."""
    sign_in(page, site)
    page.goto(site["base"] + "/campaigns?group_by=medium&window=all&sort=mql_count&dir=desc&q=e")
    expect(page.locator("#group-by")).to_have_value("medium")
    expect(page.locator("#window")).to_have_value("all")
    expect(page.locator("#filter")).to_have_value("e")
    expected = api(
        site,
        "/analytics/campaigns",
        page.eval_on_selector("#org-unit", "s => s.value"),
        group_by="medium",
    )
    names = sorted(r["name"] for r in expected["campaigns"] if "e" in r["name"].lower())
    eventually(page, lambda page: sorted(name for name, _ in names_and_events(page)), names)
    mqls = [number(row[3]) for row in table(page)]
    assert mqls == sorted(mqls, reverse=True)


def test_a_shared_link_opens_its_org_unit(page: Page, site: dict[str, Any]) -> None:
    """The org unit is part of the URL: a link opens the unit it names."""
    sign_in(page, site)
    small = site["units"][2]
    page.goto(site["base"] + f"/campaigns?group_by=source&window=all&ou={small}")
    expect(page.locator("#org-unit")).to_have_value(small)
    expected = api(site, "/analytics/campaigns", small, group_by="source")["campaigns"]
    eventually(
        page,
        lambda page: [name for name, _ in names_and_events(page)],
        [r["name"] for r in expected],
    )
    page.select_option("#org-unit", site["units"][0])
    expect(page).to_have_url(re.compile(f"ou={site['units'][0]}"))


def test_drift_is_flagged(page: Page, site: dict[str, Any]) -> None:
    """Values differing only by case or whitespace are listed as probable drift."""
    sign_in(page, site)
    page.select_option("#org-unit", site["units"][0])
    page.select_option("#window", "all")
    # Wait for the "all" window's groups: until then the list may still hold the
    # previous window's "no variants" line.
    expect(page.locator("#drift li").first).to_contain_text(" · ")
    first = page.locator("#drift li").first.inner_text()
    variants = [name.strip('"') for name in first.split(" · ")]
    assert len({v.strip().lower() for v in variants}) == 1
    assert len(set(variants)) > 1
    assert page.locator(".flag").count() >= 2


def test_errors_are_shown_not_blank(page: Page, site: dict[str, Any]) -> None:
    """A bad token gets a clear message and the sign-in form back."""
    page.goto(site["base"] + "/")
    page.fill("#token", "not-a-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#message")).to_contain_text("Sign in again")
    expect(page.locator("#sign-in")).to_be_visible()


def downloaded(page: Page, button: str) -> list[dict[str, str]]:
    with page.expect_download() as download:
        page.click(button)
    return list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))


def open_odd_values(page: Page, site: dict[str, Any]) -> None:
    sign_in(page, site)
    page.goto(site["base"] + f"/campaigns?window=all&ou={site['odd']}")
    expect(page.locator("#org-unit")).to_have_value(site["odd"])
    eventually(page, lambda page: sorted(row[0] for row in table(page)), sorted(ODD_VALUES))


def test_formulas_are_plain_text_and_neutralised_in_the_downloads(
    page: Page, site: dict[str, Any]
) -> None:
    """A value a spreadsheet would run (=, +, -, @ first) shows as itself on the page
    and reaches the CSV with a leading '; numbers stay numbers."""
    open_odd_values(page, site)
    assert sorted(row[0] for row in table(page)) == sorted(ODD_VALUES)
    formula = ODD_VALUES[0]
    page.click("details.facet[data-key=utm_campaign] summary")
    expect(page.locator("details.facet[data-key=utm_campaign] .chip-name")).to_have_count(
        len(ODD_VALUES)
    )
    page.locator("details.facet[data-key=utm_campaign] button.chip", has_text=formula).click()
    expect(page.locator("#active-filters .chip-name")).to_have_text(f"Campaign: {formula}")
    expect(page.locator("#table-body tr")).to_have_count(1)
    # A list: the unfiltered chart's legend may still be shown (several names), and
    # a single-text expectation refuses that at once instead of waiting.
    expect(page.locator("#legend .legend-name")).to_have_text([formula])
    page.locator("#chart .point").first.hover()
    expect(page.locator("#chart-tip .tip-name")).to_have_text(formula)
    assert page.locator("#overview a").count() == 0
    assert page.evaluate("document.querySelectorAll('[href], [src], img, iframe').length") == 2
    page.click("#clear-filters")
    expect(page.locator("#table-body tr")).to_have_count(len(ODD_VALUES))
    expect(page.locator("#download-note")).to_contain_text("leading '")
    got = download_bytes(page, "#download")
    names = {row["name"] for row in csv.DictReader(io.StringIO(got.decode(), newline=""))}
    assert names == {'\'=HYPERLINK("http://x")', "'-5% off", "'@team", "'+plus", ".", "..", "..."}
    exact = api_response(site, "/analytics/campaigns", site["odd"], format="csv").content
    assert parsed(got) == neutralised(parsed(exact), NUMERIC)

    page.click("button.row-link[data-value='=HYPERLINK(\"http://x\")']")
    expect(page.locator("#drill-title")).to_have_text('Leads of "=HYPERLINK(\\"http://x\\")"')
    expect(page.locator("#drill-body tr")).to_have_count(1)
    expect(page.locator("#drill-download-note")).to_be_visible()
    (lead,) = downloaded(page, "#drill-download")
    assert (lead["display_name"], lead["title"], lead["score"]) == ("'+1 555 0100", "'=1+1", "-5")
    assert table(page, "#drill-body")[0][:7] == ["+1 555 0100", "—", "—", "—", "=1+1", "—", "-5"]


def test_the_values_dot_and_dot_dot_open_their_drilldown(page: Page, site: dict[str, Any]) -> None:
    """A browser drops "." and ".." from a URL path, %2E or not: the page names them
    in the query, and shows their leads."""
    open_odd_values(page, site)
    for value in (".", "..", "..."):
        page.click(f"button.row-link[data-value='{value}']")
        expect(page.locator("#drill-title")).to_have_text(f'Leads of "{value}"')
        expected = api(site, "/analytics/campaigns/leads", site["odd"], campaign_name=value)
        assert expected["campaign_name"] == value
        (lead,) = expected["leads"]
        expect(page.locator("#drill-body tr")).to_have_count(1)
        assert table(page, "#drill-body")[0][13] == lead["lead_id"]
        expect(page.locator("#message")).to_be_hidden()
        page.click("#back")
        expect(page.locator("#overview")).to_be_visible()


def points(page: Page) -> dict[str, dict[str, str]]:
    """The chart's points: per charted name, each bucket's value as the page holds it."""
    found: list[list[str]] = page.eval_on_selector_all(
        "#chart .point", "ps => ps.map(p => [p.dataset.name, p.dataset.bucket, p.dataset.value])"
    )
    drawn: dict[str, dict[str, str]] = {}
    for name, bucket, value in found:
        drawn.setdefault(name, {})[bucket] = value
    return drawn


def series_of(answer: dict[str, Any], metric: str) -> dict[str, dict[str, str]]:
    return {
        one["name"]: {
            bucket: str(value) for bucket, value in zip(answer["buckets"], one[metric], strict=True)
        }
        for one in answer["series"]
    }


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_the_chart_draws_the_api_numbers(page: Page, site: dict[str, Any]) -> None:
    """The trend chart's points equal the API's time series, for the top 5 by default and
    for a value whose box is ticked; a point shows its bucket and exact value."""
    sign_in(page, site)
    large = site["units"][0]
    page.goto(site["base"] + f"/campaigns?ou={large}&window=90&metric=total_events&tz=UTC")
    expect(page.locator("#interval")).to_have_value("week")
    expect(page.locator("#legend li")).to_have_count(5)
    rows = api(site, "/analytics/campaigns", large, tz="UTC", **last_days(90))["campaigns"]
    top = [row["name"] for row in rows[:5]]
    answer = api(
        site,
        "/analytics/campaigns/timeseries",
        large,
        name=top,
        interval="week",
        tz="UTC",
        **last_days(90),
    )
    assert points(page) == series_of(answer, "total_events")

    sixth = rows[5]["name"]
    page.locator(f"input.chart-pick[data-value={json.dumps(sixth)}]").check()
    expect(page.locator("#legend li")).to_have_count(6)
    assert query_of(page)["chart"] == [*top, sixth]
    page.select_option("#metric", "pipeline_value")
    page.select_option("#interval", "day")
    expect(page).to_have_url(re.compile(r"interval=day"))
    answer = api(
        site,
        "/analytics/campaigns/timeseries",
        large,
        name=[*top, sixth],
        interval="day",
        tz="UTC",
        **last_days(90),
    )
    page.wait_for_function(
        "n => document.querySelectorAll('#chart .point').length === n", arg=6 * 90
    )
    drawn = points(page)
    expected = series_of(answer, "pipeline_value")
    assert {name: {b: Decimal(v) for b, v in d.items()} for name, d in drawn.items()} == {
        name: {b: Decimal(v) for b, v in d.items()} for name, d in expected.items()
    }

    # The richest point whose value no other line shares in its bucket (there the
    # pointer could be nearest to either).
    richest = max(
        (
            (name, bucket)
            for name, values in expected.items()
            for bucket, value in values.items()
            if sum(Decimal(v[bucket]) == Decimal(value) for v in expected.values()) == 1
        ),
        key=lambda at: Decimal(expected[at[0]][at[1]]),
    )
    point = page.locator(f'#chart .point[data-bucket="{richest[1]}"]').and_(
        page.locator(f"#chart .point[data-name={json.dumps(richest[0])}]")
    )
    # Forced: another line's marker may overlap this one; the chart answers for the
    # point nearest the pointer, which is this one.
    point.hover(force=True)
    tip = page.locator("#chart-tip")
    expect(tip).to_be_visible()
    amount = Decimal(expected[richest[0]][richest[1]])
    expect(tip).to_contain_text(f"pipeline: {amount:,.2f}")
    day = datetime.fromisoformat(richest[1].replace("Z", "+00:00"))
    expect(tip).to_contain_text(f"{day:%b} {day.day}, {day.year}")
    expect(tip.locator(".tip-name")).to_have_text(richest[0])

    # From the keyboard: focus opens the first line's last point; arrows move along it.
    page.mouse.move(0, 0)
    page.focus("#chart svg.trend")
    buckets = answer["buckets"]
    expect(tip).to_have_attribute("data-bucket", buckets[-1])
    page.keyboard.press("ArrowLeft")
    expect(tip).to_have_attribute("data-bucket", buckets[-2])
    assert tip.get_attribute("data-value") == expected[top[0]][buckets[-2]]

    # At most 20 lines: with 20 charted, the other rows' boxes are disabled.
    twenty = urlencode([("chart", row["name"]) for row in rows[:20]])
    page.goto(site["base"] + f"/campaigns?ou={large}&window=90&tz=UTC&{twenty}")
    expect(page.locator("#legend li")).to_have_count(20)
    expect(page.locator("input.chart-pick:checked")).to_have_count(20)
    expect(page.locator("input.chart-pick:not(:checked):not(:disabled)")).to_have_count(0)
    assert page.locator("input.chart-pick:disabled").count() == len(rows) - 20


def test_filters_and_the_time_zone_round_trip_through_the_url(
    page: Page, site: dict[str, Any]
) -> None:
    """Chips filter the table, totals and chart; the filters and the time zone live in
    the URL and come back on reload."""
    sign_in(page, site)
    large = site["units"][0]
    page.goto(site["base"] + f"/campaigns?ou={large}&window=30")
    expect(page).to_have_url(re.compile(r"tz=UTC"))  # the browser's zone
    expect(page.locator("#tz")).to_have_value("UTC")
    sources = api(site, "/analytics/campaigns", large, group_by="source", **last_days(30))
    source = sources["campaigns"][1]
    page.click("details.facet[data-key=utm_source] summary")
    chip = page.locator(
        f"details.facet[data-key=utm_source] button.chip[data-value={source['name']!r}]"
    )
    expect(chip.locator(".chip-count")).to_have_text(f"{source['total_events']:,}")
    chip.click()
    expect(page).to_have_url(re.compile(f"utm_source={source['name']}"))
    page.click("details.facet[data-key=utm_medium] summary")
    mediums = api(
        site,
        "/analytics/campaigns",
        large,
        group_by="medium",
        utm_source=source["name"],
        **last_days(30),
    )["campaigns"]
    medium = mediums[0]["name"]
    page.click(f"details.facet[data-key=utm_medium] button.chip[data-value={medium!r}]")
    expect(page).to_have_url(re.compile(f"utm_medium={medium}"))
    page.select_option("#tz", "America/New_York")
    expect(page).to_have_url(re.compile(r"tz=America%2FNew_York"))

    def expect_the_filtered_view() -> tuple[list[dict[str, Any]], dict[str, str]]:
        asked = {
            "utm_source": source["name"],
            "utm_medium": medium,
            "tz": "America/New_York",
            **last_days(30, "America/New_York"),
        }
        expected = api(site, "/analytics/campaigns", large, **asked)["campaigns"]
        totals = api(site, "/analytics/campaigns/totals", large, **asked)["totals"]
        eventually(page, names_and_events, [(row["name"], row["total_events"]) for row in expected])
        # Times are the chosen zone's.
        first = datetime.fromisoformat(expected[0]["first_event_at"]).astimezone(
            ZoneInfo("America/New_York")
        )
        assert table(page)[0][8].replace("\u202f", " ") == (
            f"{first:%b} {first.day}, {first.year}, {first.hour % 12 or 12}:{first:%M %p}"
        )
        (total,) = table(page, "#table-totals")
        assert "de-duplicated" in total[0]
        assert [number(cell) for cell in total[1:6]] == [
            totals[key]
            for key in ("total_events", "unique_leads", "mql_count", "total_points", "deals_count")
        ]
        assert total[6] == f"{totals['pipeline_value']:,.2f}"
        active = page.locator("#active-filters button.chip")
        expect(active).to_have_count(2)
        expect(active.nth(0)).to_contain_text(f"Source: {source['name']}")
        expect(active.nth(1)).to_contain_text(f"Medium: {medium}")
        expect(page.locator("#tz")).to_have_value("America/New_York")
        expect(page.locator("#legend li")).to_have_count(min(5, len(expected)))
        return expected, asked

    expect_the_filtered_view()
    page.reload()
    expected, asked = expect_the_filtered_view()
    top = expected[0]["name"]
    page.click(f"button.row-link[data-value={top!r}]")
    leads = api(site, f"/analytics/campaigns/{top}/leads", large, **asked)["leads"]
    expect(page.locator("#drill-note")).to_contain_text(f"{len(leads)} of {len(leads)} leads")
    assert [row[13] for row in table(page, "#drill-body")] == [lead["lead_id"] for lead in leads]
    page.go_back()
    query = query_of(page)
    assert (query["utm_source"], query["utm_medium"], query["tz"]) == (
        [source["name"]],
        [medium],
        ["America/New_York"],
    )
    page.click("#active-filters button.chip >> nth=0")
    expect(page.locator("#active-filters button.chip")).to_have_count(1)
    assert "utm_source" not in query_of(page)


def test_the_drilldown_loads_every_lead(page: Page, site: dict[str, Any]) -> None:
    """The drilldown says how many of how many leads it shows and loads the next pages
    until the last lead; money shows two decimals."""
    sign_in(page, site)
    big = site["big"]
    page.goto(site["base"] + f"/campaigns?ou={big}&window=30")
    expect(page.locator("#table-body tr")).to_have_count(1)
    assert table(page)[0][6] == "176,393.10"
    assert table(page, "#table-totals")[0][6] == "176,393.10"
    page.click(f"button.row-link[data-value='{BIG_CAMPAIGN}']")
    expect(page.locator("#drill-note")).to_contain_text(f"500 of {BIG_LEADS:,} leads")
    expect(page.locator("#drill-body tr")).to_have_count(500)
    more = page.locator("#load-more")
    more.click()
    expect(page.locator("#drill-note")).to_contain_text(f"1,000 of {BIG_LEADS:,} leads")
    expect(more).to_have_text("Load 100 more leads")
    more.click()
    expect(page.locator("#drill-body tr")).to_have_count(BIG_LEADS)
    expect(more).to_be_hidden()
    expected = []
    for offset in range(0, BIG_LEADS, 500):
        expected += api(
            site,
            f"/analytics/campaigns/{BIG_CAMPAIGN}/leads",
            big,
            offset=str(offset),
            **last_days(30),
        )["leads"]
    shown = table(page, "#drill-body")
    assert [row[13] for row in shown] == [lead["lead_id"] for lead in expected]
    amounts = {row[10] for row in shown}
    assert amounts == {"176,393.10", "—"}


def neutralised(rows: list[list[str]], numeric: set[str]) -> list[list[str]]:
    """The rows as the page's download writes them: a cell a spreadsheet would run
    gets a leading ', except a number in a numeric column."""
    header, *body = rows

    def safe(column: str, cell: str) -> str:
        if column in numeric and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", cell):
            return cell
        return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell

    return [header] + [[safe(c, cell) for c, cell in zip(header, row, strict=True)] for row in body]


NUMERIC = {"total_events", "unique_leads", "mql_count", "total_points", "deals_count"} | {
    "pipeline_value",
    "closed_won_value",
    "score",
    "deal_amount",
    "values",
}


def download_bytes(page: Page, button: str) -> bytes:
    with page.expect_download() as download:
        page.click(button)
    return Path(download.value.path()).read_bytes()


def parsed(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_downloads_are_the_api_csv(page: Page, site: dict[str, Any]) -> None:
    """The page's downloads are the API's CSV for the same filters, time zone and window,
    every row and every page of leads, byte for byte where nothing needed neutralising."""
    sign_in(page, site)
    large = site["units"][0]
    sources = api(site, "/analytics/campaigns", large, group_by="source")["campaigns"]
    source = sources[0]["name"]
    page.goto(site["base"] + f"/campaigns?ou={large}&window=all&tz=Asia/Tokyo&utm_source={source}")
    expect(page.locator("#active-filters button.chip")).to_have_count(1)
    asked = {"tz": "Asia/Tokyo", "utm_source": source, "format": "csv"}
    exact = api_response(site, "/analytics/campaigns", large, **asked).content
    # No seeded value needs neutralising: the download is the API's CSV byte for byte.
    assert parsed(exact) == neutralised(parsed(exact), NUMERIC)
    assert download_bytes(page, "#download") == exact
    assert len(parsed(exact)) > 10

    expect(page.locator("body.loading")).to_have_count(0)
    chart = download_bytes(page, "#chart-download")
    names = page.eval_on_selector_all("#legend li", "items => items.map(i => i.dataset.name)")
    assert len(names) == 5
    exact = api_response(
        site, "/analytics/campaigns/timeseries", large, name=names, interval="month", **asked
    ).content
    assert parsed(chart) == neutralised(parsed(exact), NUMERIC)

    big = site["big"]
    page.goto(site["base"] + f"/campaigns?ou={big}&window=all&tz=UTC&value={BIG_CAMPAIGN}")
    expect(page.locator("#drill-body tr")).to_have_count(500)
    leads = parsed(download_bytes(page, "#drill-download"))
    pages = [
        parsed(
            api_response(
                site,
                f"/analytics/campaigns/{BIG_CAMPAIGN}/leads",
                big,
                offset=str(offset),
                format="csv",
            ).content
        )
        for offset in range(0, BIG_LEADS, 500)
    ]
    assert leads == pages[0] + pages[1][1:] + pages[2][1:]
    assert len(leads) == 1 + BIG_LEADS


def test_a_leads_download_spanning_a_refresh_starts_again(page: Page, site: dict[str, Any]) -> None:
    """Pages of two snapshots are not one list: when a later page comes from another
    snapshot, the download starts again from the first page, and the file holds one
    snapshot's leads."""
    sign_in(page, site)
    big = site["big"]
    asked: list[str] = []
    moved = {"done": False}

    def a_refresh_between_pages(route: Route) -> None:
        asked.append(route.request.url)
        response = route.fetch()
        headers = dict(response.headers)
        if "offset=500" in route.request.url and not moved["done"]:
            moved["done"] = True
            headers["x-snapshot-at"] = "2000-01-01T00:00:00Z"
        route.fulfill(response=response, headers=headers)

    page.goto(site["base"] + f"/campaigns?ou={big}&window=all&tz=UTC&value={BIG_CAMPAIGN}")
    expect(page.locator("#drill-body tr")).to_have_count(500)
    page.route("**/leads?*format=csv*", a_refresh_between_pages)
    leads = parsed(download_bytes(page, "#drill-download"))
    assert moved["done"]
    assert sum("offset=0" in url for url in asked) == 2
    exact = api_response(
        site, f"/analytics/campaigns/{BIG_CAMPAIGN}/leads", big, limit="500", format="csv"
    ).content
    assert leads[: 1 + 500] == parsed(exact)
    assert len(leads) == 1 + BIG_LEADS


VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""


def test_the_page_runs_under_its_content_security_policy(page: Page, site: dict[str, Any]) -> None:
    """No inline script, handler or style in the page (script-src 'self', style-src
    'self'): the token form signs in with Enter, the controls' form is never sent,
    and the browser reports no violation."""
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html, re.IGNORECASE)
    assert not re.search(r"<style|\sstyle\s*=", html, re.IGNORECASE)
    assert "script-src 'self'" in httpx.get(site["base"] + "/").headers["content-security-policy"]

    page.add_init_script(VIOLATIONS)
    page.goto(site["base"] + "/campaigns")
    page.fill("#token", site["token"])
    page.press("#token", "Enter")
    expect(page.locator("#table-body tr").first).to_be_visible()
    page.evaluate("window.stayed = true")
    page.evaluate("document.getElementById('controls').requestSubmit()")
    page.press("#filter", "Enter")
    page.wait_for_timeout(300)
    assert page.evaluate("window.stayed") is True
    page.select_option("#metric", "unique_leads")
    page.locator("#chart svg.trend").hover()
    expect(page.locator("#chart-tip")).to_be_visible()
    page.click("details.facet[data-key=utm_medium] summary")
    page.click("details.facet[data-key=utm_medium] button.chip >> nth=0")
    expect(page.locator("#active-filters button.chip")).to_have_count(1)
    page.locator("input.chart-pick >> nth=-1").check()
    with page.expect_download():
        page.click("#download")
    page.click("button.row-link >> nth=0")
    expect(page.locator("#drill-body tr").first).to_be_visible()
    assert page.evaluate("window.violations") == []


def test_screenshots_at_laptop_and_phone_widths(
    browser: Browser, site: dict[str, Any], tmp_path: Path
) -> None:
    """The page renders at laptop and phone widths, without horizontal overflow."""
    screenshots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    screenshots.mkdir(parents=True, exist_ok=True)
    viewports: tuple[tuple[str, ViewportSize], ...] = (
        ("laptop", {"width": 1280, "height": 900}),
        ("phone", {"width": 375, "height": 812}),
    )
    for label, viewport in viewports:
        context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
        page = context.new_page()
        sign_in(page, site)
        page.select_option("#org-unit", site["units"][0])
        page.select_option("#window", "90")
        expect(page.locator("#custom-dates")).to_be_hidden()
        expect(page.locator("#interval")).to_have_value("week")
        expect(page.locator("body.loading")).to_have_count(0)
        expect(page.locator("#legend li")).to_have_count(5)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{label}: the page scrolls sideways by {overflow}px"
        page.click("details.facet[data-key=utm_medium] summary")
        page.click("details.facet[data-key=utm_medium] button.chip >> nth=0")
        page.click("details.facet[data-key=utm_medium] summary")
        expect(page.locator("#active-filters button.chip")).to_have_count(1)
        expect(page.locator("body.loading")).to_have_count(0)
        if label == "phone":  # the filters and the chart, rather than the controls above them
            page.locator(".filters").evaluate("card => card.scrollIntoView()")
        page.locator("#chart .point[data-series='0']").nth(-2).hover(force=True)
        expect(page.locator("#chart-tip")).to_be_visible()
        page.screenshot(path=str(screenshots / f"campaigns-{label}.png"))
        page.click("button.row-link >> nth=0")
        expect(page.locator("#drill-body tr").first).to_be_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{label}: the drilldown scrolls sideways by {overflow}px"
        if label == "phone":
            # The wide table scrolls inside its card rather than clipping columns.
            assert page.eval_on_selector(
                "#drilldown .table-wrap", "w => w.scrollWidth > w.clientWidth"
            )
        page.screenshot(path=str(screenshots / f"drilldown-{label}.png"))
        context.close()

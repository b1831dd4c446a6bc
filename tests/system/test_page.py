"""The Campaigns page in a real headless Chromium, against a real server and seeded data.

The numbers on the page must equal the API's JSON for the same request.
Screenshots at laptop and phone widths are written to docs/screenshots.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

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
    for unit in [*result.org_unit_ids, odd]:
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
        yield {"base": base, "token": token, "units": result.org_unit_ids, "odd": odd}
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
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


def api(site: dict[str, Any], path: str, unit: str, **params: str) -> Any:
    response = httpx.get(
        site["base"] + path,
        params=params,
        headers={"Authorization": f"Bearer {site['token']}", "X-Org-Unit-Id": unit},
    )
    assert response.status_code == 200, response.text
    return response.json()


def last_days(days: int) -> dict[str, str]:
    today = datetime.now(UTC).date()
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
        page.wait_for_function(
            "n => document.querySelectorAll('#table-body tr').length === n", arg=len(expected)
        )
        shown = [(row[0].removesuffix("drift").rstrip("\n"), number(row[1])) for row in table(page)]
        assert shown == [(row["name"], row["total_events"]) for row in expected]

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
    page.wait_for_function(
        "n => document.querySelectorAll('#table-body tr').length === n", arg=len(names)
    )
    mqls = [number(row[3]) for row in table(page)]
    assert mqls == sorted(mqls, reverse=True)


def test_a_shared_link_opens_its_org_unit(page: Page, site: dict[str, Any]) -> None:
    """The org unit is part of the URL: a link opens the unit it names."""
    sign_in(page, site)
    small = site["units"][2]
    page.goto(site["base"] + f"/campaigns?group_by=source&window=all&ou={small}")
    expect(page.locator("#org-unit")).to_have_value(small)
    expected = api(site, "/analytics/campaigns", small, group_by="source")["campaigns"]
    page.wait_for_function(
        "n => document.querySelectorAll('#table-body tr').length === n", arg=len(expected)
    )
    assert [row[0].removesuffix("drift").rstrip("\n") for row in table(page)] == [
        r["name"] for r in expected
    ]
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
    page.wait_for_function(
        "n => document.querySelectorAll('#table-body tr').length === n", arg=len(ODD_VALUES)
    )


def test_formulas_are_plain_text_and_neutralised_in_the_downloads(
    page: Page, site: dict[str, Any]
) -> None:
    """A value a spreadsheet would run (=, +, -, @ first) shows as itself on the page
    and reaches the CSV with a leading '; numbers stay numbers."""
    open_odd_values(page, site)
    assert sorted(row[0] for row in table(page)) == sorted(ODD_VALUES)
    assert page.locator("#table-body a").count() == 0
    expect(page.locator("#download-note")).to_contain_text("leading '")
    names = {row["name"] for row in downloaded(page, "#download")}
    assert names == {'\'=HYPERLINK("http://x")', "'-5% off", "'@team", "'+plus", ".", "..", "..."}

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
    expect(page.locator(".bar-fill").first).to_be_visible()
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
        ("phone", {"width": 390, "height": 844}),
    )
    for label, viewport in viewports:
        context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
        page = context.new_page()
        sign_in(page, site)
        page.select_option("#org-unit", site["units"][0])
        page.select_option("#window", "90")
        expect(page.locator("#custom-dates")).to_be_hidden()
        page.wait_for_timeout(300)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{label}: the page scrolls sideways by {overflow}px"
        page.screenshot(path=str(screenshots / f"campaigns-{label}.png"))
        page.click("button.row-link >> nth=0")
        expect(page.locator("#drill-body tr").first).to_be_visible()
        page.screenshot(path=str(screenshots / f"drilldown-{label}.png"))
        context.close()

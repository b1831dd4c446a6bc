"""Every rule of docs/semantics.md on small hand-made data, through the API."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from support.world import World, at
from tests.conftest import refresh

Client = TestClient[Litestar]


def campaigns(client: Client, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get("/analytics/campaigns", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return body


def rows_by_name(client: Client, headers: dict[str, str], **params: str) -> dict[str, Any]:
    return {row["name"]: row for row in campaigns(client, headers, **params)["campaigns"]}


def leads(
    client: Client, headers: dict[str, str], name: str, **params: str
) -> list[dict[str, Any]]:
    response = client.get(
        f"/analytics/campaigns/{quote(name, safe='')}/leads", params=params, headers=headers
    )
    assert response.status_code == 200, response.text
    body = json.loads(response.text, parse_float=Decimal)
    assert body["campaign_name"] == name
    result: list[dict[str, Any]] = body["leads"]
    return result


@pytest.fixture
def unit(world: World) -> str:
    return world.org_unit("Acme")


@pytest.fixture
def headers(world: World, unit: str) -> dict[str, str]:
    return world.reader(unit)


# ------------------------------------------------------------ grouping --


@pytest.mark.parametrize(
    ("group_by", "expected_group", "expected_name"),
    [
        ("campaign", "campaign", "spring"),
        ("source", "source", "linkedin"),
        ("medium", "medium", "email"),
        ("", "campaign", "spring"),
        ("Campaign", "campaign", "spring"),
        ("bogus", "campaign", "spring"),
    ],
)
def test_group_by_selects_the_utm_key_and_falls_back_to_campaign(
    world: World,
    unit: str,
    headers: dict[str, str],
    client: Client,
    group_by: str,
    expected_group: str,
    expected_name: str,
) -> None:
    """group_by picks utm_campaign, utm_source or utm_medium; anything else means campaign."""
    world.event(unit, campaign="spring", source="linkedin", medium="email")
    refresh(client)
    body = campaigns(client, headers, group_by=group_by)
    assert body["group_by"] == expected_group
    assert [row["name"] for row in body["campaigns"]] == [expected_name]


def test_missing_group_by_means_campaign(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Without group_by the envelope says campaign."""
    world.event(unit, campaign="spring", source="linkedin")
    refresh(client)
    assert campaigns(client, headers)["group_by"] == "campaign"


# ------------------------------------------------------------ counting --


def test_normalized_duplicates_are_not_counted(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """The duplicate of a normalized pair is excluded; the canonical row and plain events count."""
    world.event(unit, campaign="c", normalized=True, parent=True)
    world.event(unit, campaign="c", normalized=True, parent=False)
    world.event(unit, campaign="c", normalized=False, parent=False)
    world.event(unit, campaign="c", normalized=False, parent=True)
    refresh(client)
    assert rows_by_name(client, headers)["c"]["total_events"] == 3


def test_values_match_exactly_without_trimming_or_case_folding(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Spring, spring and ' spring ' are three values."""
    for name in ("Spring", "spring", " spring ", "spring"):
        world.event(unit, campaign=name)
    refresh(client)
    rows = campaigns(client, headers)["campaigns"]
    assert [(row["name"], row["total_events"]) for row in rows] == [
        ("spring", 2),
        (" spring ", 1),
        ("Spring", 1),
    ]


def test_empty_null_and_missing_values_are_not_values(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """An empty string, a JSON null or a missing key gives no row."""
    world.event(unit, campaign="")
    world.event(unit, campaign=None)
    world.event(unit, source="x")
    refresh(client)
    assert campaigns(client, headers)["campaigns"] == []


def test_non_string_json_values_use_postgres_text(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A JSON number 2026 is the value "2026"; true is "true"; an object is its JSON text."""
    world.event(unit, campaign=2026)
    world.event(unit, campaign=True)
    world.event(unit, campaign=1.50)
    refresh(client)
    assert set(rows_by_name(client, headers)) == {"2026", "true", "1.5"}


def test_events_without_lead_count_but_add_no_lead(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Lead-less events count in total_events, total_points and the timestamps only."""
    lead = world.lead(unit, level="Hot")
    world.event(
        unit,
        lead=lead,
        campaign="c",
        occurred_at="2026-03-10T00:00:00",
        metadata={"score_delta": 1},
    )
    world.event(unit, campaign="c", occurred_at="2026-03-12T00:00:00", metadata={"score_delta": 5})
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert (row["total_events"], row["unique_leads"], row["mql_count"], row["total_points"]) == (
        2,
        1,
        1,
        6,
    )
    assert row["last_event_at"] == "2026-03-12T00:00:00Z"


def test_other_org_units_are_invisible(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Events of the same value in another org unit never aggregate in."""
    other = world.org_unit("Other")
    world.event(unit, campaign="shared")
    world.event(other, campaign="shared")
    world.event(other, campaign="theirs")
    refresh(client)
    assert {name: row["total_events"] for name, row in rows_by_name(client, headers).items()} == {
        "shared": 1
    }


def test_a_lead_of_another_org_unit_counts_with_its_own_facts(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Events join leads by id alone: a lead of another org unit brings its level
    (MQL), its account's deals of this org unit, and its drilldown fields, after a
    full load and after an event first names it in an incremental refresh."""
    other = world.org_unit("Other")
    account = world.account(other, name="Elsewhere Inc")
    world.deal(unit, account, amount="250.00", stage="closed_won")
    world.deal(other, account, amount="999.00")
    lead = world.lead(other, account=account, level="Hot", metadata={"title": "CTO"})
    named = world.event(unit, campaign="named")
    refresh(client)
    world.event(unit, lead=lead, campaign="seen")
    world.sql("UPDATE events SET lead_id = %s WHERE id = %s", (lead, named))
    refresh(client)
    assert client.app.state.refresher.status.last_kind == "incremental"
    for kind in ("incremental", "full"):
        if kind == "full":
            client.app.state.refresher.request_full()
            refresh(client)
        assert client.app.state.refresher.status.last_kind == kind
        for name in ("seen", "named"):
            row = rows_by_name(client, headers)[name]
            assert (row["unique_leads"], row["mql_count"], row["deals_count"]) == (1, 1, 1)
            assert (row["pipeline_value"], row["closed_won_value"]) == (250, 250)
            [found] = leads(client, headers, name)
            assert (found["lead_id"], found["title"], found["level"]) == (lead, "CTO", "Hot")
            assert (found["account_name"], found["deal_amount"]) == ("Elsewhere Inc", 999)


# -------------------------------------------------------------- window --


@pytest.mark.parametrize(
    ("start_date", "end_date", "expected"),
    [
        ("2026-03-01", "2026-03-31", ["first", "last"]),
        ("2026-03-31", "2026-03-31", ["last"]),
        ("2026-03-01", "2026-03-01", ["first"]),
        ("2026-03-02", "2026-03-30", []),
        ("2026-03-01T00:00:00Z", "2026-03-31T23:59:59.999999Z", ["first", "last"]),
        ("2026-03-01T00:00:00.000001Z", "2026-03-31T23:59:59.999998Z", []),
        ("2026-03-01T01:00:00+01:00", "2026-04-01T01:59:59.999999+02:00", ["first", "last"]),
        ("2026-02-28T19:00:00-05:00", None, ["first", "last", "april"]),
        (None, "2026-03-01", ["first"]),
        ("2026-03-31T23:59:59.9999991Z", None, ["april"]),
        (None, "2026-03-31T23:59:59.9999999Z", ["first", "last"]),
    ],
)
def test_window_bounds_are_inclusive_and_dates_are_whole_utc_days(
    world: World,
    unit: str,
    headers: dict[str, str],
    client: Client,
    start_date: str | None,
    end_date: str | None,
    expected: list[str],
) -> None:
    """A date is a whole UTC day; both bounds include their instant; offsets are honoured."""
    world.event(unit, campaign="first", occurred_at="2026-03-01T00:00:00")
    world.event(unit, campaign="last", occurred_at="2026-03-31T23:59:59.999999")
    world.event(unit, campaign="april", occurred_at="2026-04-01T00:00:00")
    refresh(client)
    params = {
        k: v for k, v in (("start_date", start_date), ("end_date", end_date)) if v is not None
    }
    assert sorted(rows_by_name(client, headers, **params)) == sorted(expected)


# ----------------------------------------------------------- the row --


def test_unique_leads_and_mql_count_use_current_trimmed_level(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """MQL counts distinct leads whose trimmed, lower-cased level is warm or hot:
    trimmed of spaces, tabs, line feeds and carriage returns, nothing else."""
    levels = ["Warm", " HOT ", "hot", "hot\t", "\r\nWarm \t", "Cold", None, "warmish", "Lukewarm"]
    levels += ["\vhot", "hot\xa0", "wa rm", "h\tot"]
    for level in levels:
        lead = world.lead(unit, level=level)
        world.event(unit, lead=lead, campaign="c")
        world.event(unit, lead=lead, campaign="c")
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert (row["total_events"], row["unique_leads"], row["mql_count"]) == (26, 13, 5)


@pytest.mark.parametrize(
    ("score_delta", "points"),
    [
        (5, 5),
        (-3, -3),
        (2.5, 3),
        (-2.5, -3),
        (2.4999, 2),
        ("7", 7),
        ("2.5", 3),
        ("-2.5", -3),
        ("-0.5", -1),
        ("0007", 7),
        (1e3, 1000),
        ("1e3", 0),
        (" 5", 0),
        ("5 ", 0),
        ("+5", 0),
        ("5.", 0),
        (".5", 0),
        ("abc", 0),
        (True, 0),
        (None, 0),
        ({"a": 1}, 0),
        ([1], 0),
        (1_000_000_000, 1_000_000_000),
        (-1_000_000_000, -1_000_000_000),
        (1_000_000_000.4, 1_000_000_000),
        (1_000_000_000.5, 0),
        ("1000000001", 0),
        (10**30, 0),
        ("99999999999999999999999999", 0),
    ],
)
def test_score_delta_reading_and_rounding(
    world: World,
    unit: str,
    headers: dict[str, str],
    client: Client,
    score_delta: Any,
    points: int,
) -> None:
    """Numbers and numeric strings round half away from zero; out of range or other kinds give 0."""
    world.event(unit, campaign="c", metadata={"score_delta": score_delta})
    world.event(unit, campaign="c")
    refresh(client)
    assert rows_by_name(client, headers)["c"]["total_points"] == points


def test_deals_are_distinct_across_leads_and_need_an_account(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A deal reachable from two leads counts once; equal amounts both count; NULL adds 0."""
    account = world.account(unit)
    lonely = world.account(unit)
    world.deal(unit, account, amount="100.00", stage="negotiation")
    world.deal(unit, account, amount="100.00", stage="Closed_Won ")
    world.deal(unit, account, amount=None, stage="closedwon")
    world.deal(unit, lonely, amount="999.99", stage="closed_won")
    first = world.lead(unit, account=account)
    second = world.lead(unit, account=account)
    accountless = world.lead(unit)
    for lead in (first, second, accountless):
        world.event(unit, lead=lead, campaign="c")
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert (row["deals_count"], row["pipeline_value"], row["closed_won_value"]) == (3, 200, 100)


def test_closed_won_matches_stage_variants_only(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """closedwon and closed_won in any case with surrounding spaces, tabs, line feeds
    and carriage returns; nothing else."""
    account = world.account(unit)
    stages: list[str | None] = [
        "ClosedWon",
        " closed_won ",
        "CLOSEDWON",
        "\nClosedWon\r",
        "\t closed_won\r\n",
    ]
    stages += ["closed won", "closed\twon", "closed-won", "won", "\fclosedwon", None]
    for index, stage in enumerate(stages):
        world.deal(unit, account, amount=str(10**index), stage=stage)
    world.event(unit, lead=world.lead(unit, account=account), campaign="c")
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert row["closed_won_value"] == 11111
    assert row["pipeline_value"] == 11111111111


def test_tabs_and_line_breaks_are_trimmed_in_full_loads_and_updates(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A level "hot\t" is an MQL and a stage "\nClosedWon\r" is closed-won, whether
    the snapshot is loaded whole or brought up to date with the lead or deal that
    changed; both equal the straight-SQL reference."""
    account = world.account(unit)
    lead = world.lead(unit, account=account, level="hot\t")
    world.deal(unit, account, amount="100.00", stage="\nClosedWon\r")
    world.event(unit, lead=lead, campaign="c")
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert (row["mql_count"], row["closed_won_value"], row["pipeline_value"]) == (1, 100, 100)

    other_account = world.account(unit)
    other = world.lead(unit, account=other_account, level="cold")
    world.deal(unit, other_account, amount="20.00", stage="closed_won\t")
    world.event(unit, lead=other, campaign="c")
    refresh(client)
    world.sql("UPDATE leads SET engagement_level = %s WHERE id = %s", ("\r\nWARM\t", other))
    refresh(client)
    assert client.app.state.refresher.status.last_kind == "incremental"
    row = rows_by_name(client, headers)["c"]
    assert (row["mql_count"], row["closed_won_value"], row["pipeline_value"]) == (2, 120, 120)
    expected = world.reference_campaigns(unit, "utm_campaign", None, None)
    assert [(r["name"], r["mql_count"], r["closed_won_value"]) for r in expected] == [("c", 2, 120)]


def test_multi_touch_credits_every_campaign_in_full(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Two campaigns touching the same account both show the deal's full amount."""
    account = world.account(unit)
    world.deal(unit, account, amount="485000.00")
    world.event(unit, lead=world.lead(unit, account=account), campaign="a")
    world.event(unit, lead=world.lead(unit, account=account), campaign="b")
    refresh(client)
    rows = rows_by_name(client, headers)
    assert rows["a"]["pipeline_value"] == rows["b"]["pipeline_value"] == 485000


def test_money_is_an_exact_json_number(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """numeric(18,2) reaches JSON as a number with no float rounding and no trailing zeros."""
    account = world.account(unit)
    world.deal(unit, account, amount="9999999999999999.99", stage="closed_won")
    world.deal(unit, account, amount="0.01", stage="closed_won")
    world.deal(unit, account, amount="1234.50")
    other = world.account(unit)
    world.deal(unit, other, amount="485000.00")
    world.event(unit, lead=world.lead(unit, account=account), campaign="big")
    world.event(unit, lead=world.lead(unit, account=other), campaign="round")
    refresh(client)
    text = client.get("/analytics/campaigns", headers=headers).text
    assert '"pipeline_value":10000000000001234.5,"closed_won_value":10000000000000000' in text
    assert '"pipeline_value":485000,"closed_won_value":0' in text


def test_timestamps_are_utc_with_z_and_keep_microseconds(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """first_event_at and last_event_at are RFC 3339 UTC, microseconds only when present."""
    world.event(unit, campaign="c", occurred_at="2026-03-01T08:14:22")
    world.event(unit, campaign="c", occurred_at="2026-03-31T19:42:01.123456")
    refresh(client)
    row = rows_by_name(client, headers)["c"]
    assert (row["first_event_at"], row["last_event_at"]) == (
        "2026-03-01T08:14:22Z",
        "2026-03-31T19:42:01.123456Z",
    )


def test_rows_sort_by_events_then_code_point(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """total_events descending, then name by Unicode code point (upper case before lower)."""
    for name in ["b", "a", "B", "é", "z", "Z"]:
        world.event(unit, campaign=name)
    world.event(unit, campaign="z")
    refresh(client)
    assert [row["name"] for row in campaigns(client, headers)["campaigns"]] == [
        "z",
        "B",
        "Z",
        "a",
        "b",
        "é",
    ]


def test_no_events_gives_an_empty_list(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """An org unit without counting events answers campaigns: []."""
    refresh(client)
    assert campaigns(client, headers) == {"group_by": "campaign", "campaigns": []}


# ---------------------------------------------------------- drilldown --


def test_drilldown_fields(world: World, unit: str, headers: dict[str, str], client: Client) -> None:
    """Every drilldown field, from aliases, metadata, account and its most recent deal."""
    account = world.account(unit, name="Acme Co")
    world.deal(unit, account, amount="10.00", stage="old", created_at=at("2026-01-01T00:00:00"))
    world.deal(
        unit, account, amount="75000.00", stage="negotiation", created_at=at("2026-02-01T00:00:00")
    )
    lead = world.lead(
        unit,
        account=account,
        level="Hot",
        score=78,
        metadata={
            "firstname": "Rachel",
            "last_name": "Kim",
            "lastname": "Ignored",
            "title": "Director",
            "company": "Acme Co",
        },
    )
    world.alias(unit, lead, "phone", "+1 555", primary=True)
    world.alias(unit, lead, "email", "late@example.com", created_at=at("2026-01-02T00:00:00"))
    world.alias(unit, lead, "email", "rachel.kim@example.com", created_at=at("2026-01-01T00:00:00"))
    world.event(unit, lead=lead, campaign="spring", occurred_at="2026-03-04T13:21:08")
    world.event(unit, lead=lead, campaign="spring", occurred_at="2026-03-31T17:05:42.5")
    world.event(unit, lead=lead, campaign="other", occurred_at="2026-04-30T00:00:00")
    refresh(client)
    assert leads(client, headers, "spring") == [
        {
            "lead_id": lead,
            "display_name": "rachel.kim@example.com",
            "email": "rachel.kim@example.com",
            "first_name": "Rachel",
            "last_name": "Kim",
            "title": "Director",
            "company": "Acme Co",
            "score": 78,
            "level": "Hot",
            "account_id": account,
            "account_name": "Acme Co",
            "deal_stage": "negotiation",
            "deal_amount": 75000,
            "first_touch_at": "2026-03-04T13:21:08Z",
            "last_touch_at": "2026-03-31T17:05:42.500000Z",
        }
    ]


def test_drilldown_defaults_for_a_bare_lead(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """No aliases, metadata, score, account or deal: nulls and score 0."""
    lead = world.lead(unit)
    world.event(unit, lead=lead, campaign="c")
    refresh(client)
    (row,) = leads(client, headers, "c")
    assert row["score"] == 0
    assert {k for k, v in row.items() if v is None} == {
        "display_name",
        "email",
        "first_name",
        "last_name",
        "title",
        "company",
        "level",
        "account_id",
        "account_name",
        "deal_stage",
        "deal_amount",
    }


@pytest.mark.parametrize(
    ("aliases", "display_name", "email"),
    [
        ([("cookie", "ck", False), ("external_id", "ext", False)], "ext", None),
        ([("cookie", "ck", False), ("social", "@me", False), ("phone", "555", False)], "555", None),
        ([("phone", "555", True), ("email", "e@x", False)], "e@x", "e@x"),
        ([("email", "late", False), ("email", "primary", True)], "primary", "primary"),
        ([("fax", "123", True)], None, None),
    ],
)
def test_display_name_takes_the_first_kind_in_order(
    world: World,
    unit: str,
    headers: dict[str, str],
    client: Client,
    aliases: list[tuple[str, str, bool]],
    display_name: str | None,
    email: str | None,
) -> None:
    """email, phone, social, external_id, cookie; within a kind the primary one first."""
    lead = world.lead(unit)
    for kind, value, primary in aliases:
        world.alias(unit, lead, kind, value, primary=primary)
    world.event(unit, lead=lead, campaign="c")
    refresh(client)
    (row,) = leads(client, headers, "c")
    assert (row["display_name"], row["email"]) == (display_name, email)


def test_preferred_alias_ties_break_on_created_at_then_id(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Among non-primary aliases of a kind the earliest wins, then the smallest id."""
    lead = world.lead(unit)
    same_time = at("2026-01-01T00:00:00")
    world.alias(
        unit,
        lead,
        "email",
        "b-id",
        created_at=same_time,
        alias_id="00000000-0000-0000-0000-00000000000b",
    )
    world.alias(
        unit,
        lead,
        "email",
        "a-id",
        created_at=same_time,
        alias_id="00000000-0000-0000-0000-00000000000a",
    )
    world.alias(
        unit,
        lead,
        "email",
        "later",
        created_at=at("2026-01-02T00:00:00"),
        alias_id="00000000-0000-0000-0000-000000000001",
    )
    world.event(unit, lead=lead, campaign="c")
    refresh(client)
    assert leads(client, headers, "c")[0]["email"] == "a-id"


def test_most_recent_deal_ties_break_on_greatest_id(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Latest created_at, then the greatest id."""
    account = world.account(unit)
    same_time = at("2026-02-01T00:00:00")
    world.deal(
        unit,
        account,
        amount="1.00",
        stage="low",
        created_at=same_time,
        deal_id="00000000-0000-0000-0000-00000000000a",
    )
    world.deal(
        unit,
        account,
        amount="2.00",
        stage="high",
        created_at=same_time,
        deal_id="00000000-0000-0000-0000-00000000000b",
    )
    world.event(unit, lead=world.lead(unit, account=account), campaign="c")
    refresh(client)
    row = leads(client, headers, "c")[0]
    assert (row["deal_stage"], row["deal_amount"]) == ("high", 2)


def test_drilldown_order_window_and_exact_match(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """First touch descending, then lead_id; the window applies; Spring is not spring."""
    early, late, tie_a, tie_b = (
        world.lead(unit, lead_id=f"00000000-0000-0000-0000-00000000000{c}") for c in "1234"
    )
    world.event(unit, lead=early, campaign="spring", occurred_at="2026-03-01T00:00:00")
    world.event(unit, lead=late, campaign="spring", occurred_at="2026-03-20T00:00:00")
    world.event(unit, lead=tie_b, campaign="spring", occurred_at="2026-03-10T00:00:00")
    world.event(unit, lead=tie_a, campaign="spring", occurred_at="2026-03-10T00:00:00")
    world.event(unit, lead=early, campaign="Spring", occurred_at="2026-03-25T00:00:00")
    world.event(unit, lead=None, campaign="spring", occurred_at="2026-03-26T00:00:00")
    refresh(client)
    assert [row["lead_id"] for row in leads(client, headers, "spring")] == [
        late,
        tie_a,
        tie_b,
        early,
    ]
    assert [
        row["lead_id"] for row in leads(client, headers, "spring", start_date="2026-03-02")
    ] == [late, tie_a, tie_b]
    assert [row["lead_id"] for row in leads(client, headers, "Spring")] == [early]
    assert leads(client, headers, "SPRING") == []


def test_drilldown_uses_the_group_by_key(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """group_by selects which key campaign_name is matched against."""
    lead = world.lead(unit)
    world.event(unit, lead=lead, campaign="email", medium="cpc")
    refresh(client)
    assert leads(client, headers, "email", group_by="medium") == []
    assert len(leads(client, headers, "cpc", group_by="medium")) == 1
    assert len(leads(client, headers, "email", group_by="bogus")) == 1


def test_drilldown_caps_at_500(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """At most 500 leads, the most recent first touches."""
    world.sql(
        "INSERT INTO leads (id, org_unit_id) SELECT md5(i::text)::uuid, %s FROM generate_series(1, 520) i",
        (unit,),
    )
    world.sql(
        "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata) "
        "SELECT %s, md5(i::text)::uuid, 'v', timestamptz '2026-03-01' + i * interval '1 minute', "
        '\'{"utm_campaign": "big"}\' FROM generate_series(1, 520) i',
        (unit,),
    )
    refresh(client)
    rows = leads(client, headers, "big")
    assert len(rows) == 500
    assert rows[0]["first_touch_at"] == "2026-03-01T08:40:00Z"
    assert rows[-1]["first_touch_at"] == "2026-03-01T00:21:00Z"


@pytest.mark.parametrize(
    "name",
    [
        "a/b",
        "50% off",
        "what?",
        "#1",
        "c+d",
        "with space",
        'quote"s',
        "it's",
        "café ☕",
        "%2F",
        "../leads",
        "a//b",
        " padded ",
        "back\\slash",
        "tab\there",
        "emoji 🚀",
        "%",
        "%%",
        "?x=1&y=2",
    ],
)
def test_every_value_reaches_its_own_drilldown(
    world: World, unit: str, headers: dict[str, str], client: Client, name: str
) -> None:
    """Percent-encoded once, any value the aggregate returns finds its own leads."""
    lead = world.lead(unit)
    decoy = world.lead(unit)
    world.event(unit, lead=lead, campaign=name)
    world.event(unit, lead=decoy, campaign=name + "x")
    refresh(client)
    assert name in rows_by_name(client, headers)
    assert [row["lead_id"] for row in leads(client, headers, name)] == [lead]


def test_unknown_value_gives_empty_leads(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A value with no counting events answers leads: [] with 200."""
    refresh(client)
    assert leads(client, headers, "nothing-here") == []

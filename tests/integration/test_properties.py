"""Random worlds in the real PostgreSQL: both endpoints equal the straight-SQL reference."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import polars as pl
import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from psycopg.types.json import Jsonb

from kenbun_analytics.engine.points import read_points
from support.world import World, from_json, normalized
from tests.conftest import make_app, refresh

UTM_VALUES = [
    "spring",
    "Spring",
    " spring",
    "spring ",
    "SPRING",
    "a/b",
    "50% off",
    "q?x#y",
    "c+d",
    "café",
    "",
    None,
    2026,
    "2026",
    "linkedin",
    "email",
    "x",
]
SCORE_DELTAS = [
    None,
    True,
    5,
    -3,
    2.5,
    -2.5,
    0.5,
    "7",
    "2.5",
    "-2.5",
    " 5",
    "1e3",
    1e3,
    1_000_000_000,
    1_000_000_001,
    -1_000_000_000.5,
    "abc",
    {"a": 1},
    "0.49",
]
LEVELS = [None, "Cold", "Warm", "Hot", " hot ", "WARM", "warmish", "hot\t", "\r\nWarm \t", "\vhot"]
LEVELS += ["wa rm", "h\tot", "\ncold\r"]
STAGES = [None, "negotiation", "closed_won", "ClosedWon", " CLOSEDWON ", "closed won", "lost"]
STAGES += ["\nClosedWon\r", "\tclosed_won \r\n", "closed\twon", "\fclosedwon", "\rlost\n"]
AMOUNTS = [None, "0.00", "100.00", "100.00", "1234.56", "9999999999999999.99", "0.01"]
ALIAS_KINDS = ["email", "phone", "social", "external_id", "cookie", "fax"]
BASE = datetime(2026, 3, 1, tzinfo=UTC)
MOMENTS = [
    BASE,
    BASE - timedelta(microseconds=1),
    BASE + timedelta(days=30, hours=23, minutes=59, seconds=59, microseconds=999999),
    BASE + timedelta(days=31),
    BASE + timedelta(days=14, hours=12, microseconds=123456),
    BASE + timedelta(days=2),
    BASE + timedelta(days=2, microseconds=1),
    BASE + timedelta(days=45),
]
WINDOWS: list[tuple[str | None, str | None]] = [
    (None, None),
    ("2026-03-01", "2026-03-31"),
    ("2026-03-03", None),
    (None, "2026-03-02T23:59:59.999999Z"),
    ("2026-03-02T01:00:00+01:00", "2026-03-15T12:00:00.123456Z"),
]


@dataclass(frozen=True)
class WorldSpec:
    units: int
    accounts: list[int]
    leads: list[tuple[int, int | None, int, int | None, bool]]
    aliases: list[tuple[int, int, int, bool, int]]
    deals: list[tuple[int, int | None, int, int, int]]
    events: list[tuple[int, int | None, int, Any, Any, Any, int, bool, bool]]


@st.composite
def worlds(draw: st.DrawFn) -> WorldSpec:
    units = 2
    accounts = draw(st.lists(st.integers(0, units - 1), min_size=0, max_size=4))
    n_accounts = len(accounts)
    leads = draw(
        st.lists(
            st.tuples(
                st.integers(0, units - 1),
                st.none() | st.integers(0, max(n_accounts - 1, 0)) if n_accounts else st.none(),
                st.integers(0, len(LEVELS) - 1),
                st.none() | st.integers(0, 100),
                st.booleans(),
            ),
            max_size=8,
        )
    )
    n_leads = len(leads)
    aliases = (
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, max(n_leads - 1, 0)),
                    st.integers(0, len(ALIAS_KINDS) - 1),
                    st.integers(0, 3),
                    st.booleans(),
                    st.integers(0, 2),
                ),
                max_size=10,
            )
        )
        if n_leads
        else []
    )
    deals = draw(
        st.lists(
            st.tuples(
                st.integers(0, units - 1),
                st.none() | st.integers(0, max(n_accounts - 1, 0)) if n_accounts else st.none(),
                st.integers(0, len(STAGES) - 1),
                st.integers(0, len(AMOUNTS) - 1),
                st.integers(0, 3),
            ),
            max_size=6,
        )
    )
    utm = st.sampled_from(UTM_VALUES) | st.just("__missing__")
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, units - 1),
                st.none() | st.integers(0, max(n_leads - 1, 0)) if n_leads else st.none(),
                st.integers(0, len(MOMENTS) - 1),
                utm,
                utm,
                utm,
                st.integers(0, len(SCORE_DELTAS)),
                st.booleans(),
                st.booleans(),
            ),
            max_size=25,
        )
    )
    return WorldSpec(units, accounts, leads, aliases, deals, events)


TRIMMED_WORLD = WorldSpec(
    units=2,
    accounts=[0],
    leads=[(0, 0, LEVELS.index("hot\t"), None, False)],
    aliases=[],
    deals=[(0, 0, STAGES.index("\nClosedWon\r"), AMOUNTS.index("100.00"), 0)],
    events=[(0, 0, 0, "spring", "__missing__", "__missing__", 0, False, False)],
)
"""Pinned: a level "hot\t" is an MQL and a stage "\nClosedWon\r" closed-won."""


def write(world: World, spec: WorldSpec) -> list[str]:
    world.clear()
    units = [world.org_unit(f"unit {i}") for i in range(spec.units)]
    accounts = [world.account(units[u], name=f"acc {i}") for i, u in enumerate(spec.accounts)]
    leads = []
    for unit, account, level, score, with_name in spec.leads:
        owner = units[unit]
        leads.append(
            world.lead(
                owner,
                account=accounts[account] if account is not None else None,
                level=LEVELS[level],
                score=score,
                metadata={"firstname": "Ann", "title": "CMO"} if with_name else {},
            )
        )
    lead: int | None  # an alias's lead always, an event's maybe
    for lead, kind, value, primary, day in spec.aliases:
        owner = world.sql("SELECT org_unit_id::text FROM leads WHERE id = %s", (leads[lead],))[0][0]
        world.alias(
            owner,
            leads[lead],
            ALIAS_KINDS[kind],
            f"v{value}",
            primary=primary,
            created_at=BASE - timedelta(days=day),
        )
    for unit, account, stage, amount, day in spec.deals:
        owner = (
            world.sql("SELECT org_unit_id::text FROM accounts WHERE id = %s", (accounts[account],))[
                0
            ][0]
            if account is not None
            else units[unit]
        )
        world.deal(
            owner,
            accounts[account] if account is not None else None,
            stage=STAGES[stage],
            amount=AMOUNTS[amount],
            created_at=BASE - timedelta(days=day),
        )
    for unit, lead, moment, campaign, source, medium, delta, normalized_, parent in spec.events:
        metadata: dict[str, Any] = {}
        for key, value in (
            ("utm_campaign", campaign),
            ("utm_source", source),
            ("utm_medium", medium),
        ):
            if value != "__missing__":
                metadata[key] = value
        if delta < len(SCORE_DELTAS):
            metadata["score_delta"] = SCORE_DELTAS[delta]
        owner = units[unit]
        lead_id = leads[lead] if lead is not None else None
        if lead_id is not None:
            owner = world.sql("SELECT org_unit_id::text FROM leads WHERE id = %s", (lead_id,))[0][0]
        world.event(
            owner,
            lead=lead_id,
            occurred_at=MOMENTS[moment],
            metadata=metadata,
            normalized=normalized_,
            parent=parent,
        )
    return units


def decoded(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def as_instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_equal_to_reference(client: TestClient[Any], world: World, units: list[str]) -> None:
    """For every group_by and window, both endpoints of ``units`` equal the SQL reference."""
    for unit in units:
        headers = world.reader(unit)
        for key, group_by in (
            ("utm_campaign", "campaign"),
            ("utm_source", "source"),
            ("utm_medium", "medium"),
        ):
            for start_date, end_date in WINDOWS:
                start = as_instant(start_date)
                end = as_instant(end_date)
                if end_date is not None and len(end_date) == 10 and end is not None:
                    end += timedelta(days=1, microseconds=-1)
                params = {
                    k: v
                    for k, v in (
                        ("group_by", group_by),
                        ("start_date", start_date),
                        ("end_date", end_date),
                    )
                    if v is not None
                }
                response = client.get("/analytics/campaigns", params=params, headers=headers)
                assert response.status_code == 200, response.text
                got = [from_json(row) for row in decoded(response.text)["campaigns"]]
                expected = world.reference_campaigns(unit, key, start, end)
                assert got == expected, (group_by, start_date, end_date)
                for row in expected:
                    response = client.get(
                        f"/analytics/campaigns/{quote(row['name'], safe='')}/leads",
                        params=params,
                        headers=headers,
                    )
                    assert response.status_code == 200, response.text
                    got_leads = [from_json(lead) for lead in decoded(response.text)["leads"]]
                    assert got_leads == world.reference_leads(unit, key, row["name"], start, end)


def test_endpoints_equal_straight_sql_on_random_worlds(database_url: str) -> None:
    """For every group_by and several windows, both endpoints equal the SQL reference."""
    app = make_app(database_url)
    with TestClient(app) as client, World.connect(database_url) as world:

        @settings(deadline=None, suppress_health_check=list(HealthCheck))
        @given(spec=worlds())
        @example(spec=TRIMMED_WORLD)
        def check(spec: WorldSpec) -> None:
            units = write(world, spec)
            refresh(client)
            assert_equal_to_reference(client, world, units)

        check()


LATER = [BASE + timedelta(days=46), BASE + timedelta(days=46, hours=5), BASE + timedelta(days=50)]
"""Moments after every moment of :data:`MOMENTS`: events arriving now."""
EDITS = st.tuples(
    st.sampled_from(["metadata", "delete", "normalize", "lead", "late", "move", "insert"]),
    st.integers(0, 24),
    st.sampled_from(UTM_VALUES),
    st.sampled_from(UTM_VALUES),
    st.integers(0, len(SCORE_DELTAS) - 1),
    st.integers(0, 7),
)
"""(kind, event, campaign, medium, score_delta, moment or lead) of one write to events."""


def edit(world: World, events: list[tuple[int, str]], leads: list[str], change: Any) -> None:
    """One write to events: in place (metadata, lead, delete, normalize), at a later
    time (late: a new event after all others), or moving rows (move, insert)."""
    kind, which, campaign, medium, delta, other = change
    metadata = {"utm_campaign": campaign, "utm_medium": medium, "score_delta": SCORE_DELTAS[delta]}
    if kind in {"late", "insert"} or not events:
        unit = (
            events[which % len(events)][1]
            if events
            else world.sql("SELECT id::text FROM org_units LIMIT 1")[0][0]
        )
        moment = LATER[other % len(LATER)] if kind == "late" else MOMENTS[other]
        events.append((world.event(unit, occurred_at=moment, metadata=metadata), unit))
        return
    event, _ = events[which % len(events)]
    if kind == "metadata":
        world.sql("UPDATE events SET metadata = %s WHERE id = %s", (Jsonb(metadata), event))
    elif kind == "delete":
        world.sql("DELETE FROM events WHERE id = %s", (event,))
    elif kind == "normalize":
        world.sql(
            "UPDATE events SET normalized = true, normalized_parent = false WHERE id = %s", (event,)
        )
    elif kind == "lead":
        lead = leads[other % len(leads)] if leads else None
        world.sql("UPDATE events SET lead_id = %s WHERE id = %s", (lead, event))
    else:
        world.sql("UPDATE events SET occurred_at = %s WHERE id = %s", (MOMENTS[other], event))


def test_incremental_refreshes_equal_straight_sql(database_url: str) -> None:
    """Random writes to the events of a random world (edits in place, deletes, events
    arriving later, moved times), picked up by one incremental refresh: both
    endpoints still equal the SQL reference. Most of these are patched in place."""
    app = make_app(database_url)
    with TestClient(app) as client, World.connect(database_url) as world:

        @settings(deadline=None, suppress_health_check=list(HealthCheck))
        @given(spec=worlds(), changes=st.lists(EDITS, min_size=1, max_size=6))
        def check(spec: WorldSpec, changes: list[Any]) -> None:
            units = write(world, spec)
            refresh(client)
            events = [
                (int(i), u)
                for i, u in world.sql("SELECT id, org_unit_id::text FROM events ORDER BY id")
            ]
            leads = [str(lead) for (lead,) in world.sql("SELECT id::text FROM leads ORDER BY id")]
            for change in changes:
                edit(world, events, leads, change)
            refresh(client)
            assert client.app.state.refresher.status.last_kind == "incremental"
            assert_equal_to_reference(client, world, units)
            # Events may now name leads of another org unit: a full load agrees too.
            client.app.state.refresher.request_full()
            refresh(client)
            assert_equal_to_reference(client, world, units)

        check()


def test_reference_helpers_agree_with_their_own_inputs(world: World) -> None:
    """The reference normalises the way the comparison expects (a guard on the oracle itself)."""
    unit = world.org_unit()
    world.event(unit, campaign="c", occurred_at="2026-03-01T00:00:00.5")
    (row,) = world.reference_campaigns(unit, "utm_campaign", None, None)
    assert row["first_event_at"] == "2026-03-01T00:00:00.500000Z"
    assert normalized({"x": Decimal("10.50"), "y": uuid.UUID(int=1)}) == {
        "x": Decimal("10.5"),
        "y": str(uuid.UUID(int=1)),
    }


JSON_SCORES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.integers(0, 9).flatmap(
        lambda places: st.decimals(-(10**11), 10**11, places=places).map(str)
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.sampled_from(
        [
            *("999999999.5", "-999999999.5", "1000000000.4999", "1000000000.5", "-1000000000.5"),
            *("1e9", "1.0000000005e9", "-0.5", "0.4999999999999999999", "1e400", "-0", "0e-20"),
        ]
    ),
    st.from_regex(r"-?0*[0-9]{0,12}(\.[0-9]{0,6})?", fullmatch=True).map(json.dumps),
    st.text(alphabet="0123456789.-+e \n", max_size=14).map(json.dumps),
    st.sampled_from(["true", "false", "null", "{}", "[1]", '"\\u0663"', '"\\uff15"']),
)
"""The JSON text of a score_delta: numbers, numeric-looking strings and other kinds."""

POINTS_REFERENCE = """
SELECT m ->> 'score_delta' AS score_delta,
       COALESCE(CASE WHEN abs(raw_points) <= 1000000000 THEN raw_points ELSE 0 END, 0)::bigint
FROM (
    SELECT i, m,
           CASE
               WHEN jsonb_typeof(m -> 'score_delta') = 'number'
                   THEN round((m ->> 'score_delta')::numeric)
               WHEN jsonb_typeof(m -> 'score_delta') = 'string'
                    AND (m ->> 'score_delta') ~ '^-?[0-9]+(\\.[0-9]+)?$'
                   THEN round((m ->> 'score_delta')::numeric)
           END AS raw_points
    FROM unnest(%s::text[]) WITH ORDINALITY AS given(t, i),
         LATERAL (SELECT jsonb_build_object('score_delta', t::jsonb) AS m) AS built
) AS scored
ORDER BY i
"""


def test_points_are_read_as_postgresql_rounds_them(server_url: str) -> None:
    """read_points, given ``metadata ->> 'score_delta'``, equals PostgreSQL's numeric reading."""
    with psycopg.connect(server_url, autocommit=True) as connection:

        @settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))
        @given(deltas=st.lists(JSON_SCORES, min_size=1, max_size=40))
        def check(deltas: list[str]) -> None:
            rows = connection.execute(POINTS_REFERENCE, (deltas,)).fetchall()
            texts = pl.Series("score_delta", [text for text, _ in rows], dtype=pl.String)
            assert read_points(texts).to_list() == [points for _, points in rows]

        check()

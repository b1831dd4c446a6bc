"""Writing kenbun worlds for tests, and the straight-SQL reference of the semantics.

Everything here goes through psycopg, a client independent of the service's
ADBC path. ``reference_campaigns`` and ``reference_leads`` are the rules of
``docs/semantics.md`` written as plain SQL over the source tables,
sharing no code with the service.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

_counter = itertools.count(1)


def at(text: str) -> datetime:
    """A UTC instant from '2026-03-01T08:00:00' or '2026-03-01T08:00:00.123456'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class World:
    """A kenbun database being filled by a test."""

    connection: psycopg.Connection[Any]
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def connect(cls, url: str) -> Iterator[World]:
        world = cls(psycopg.connect(url, autocommit=True))
        try:
            yield world
        finally:
            world.connection.close()

    def reconnect(self) -> None:
        """A new connection after the server restarted (the old one died with it)."""
        url = self.connection.info.dsn
        self.connection.close()
        self.connection = psycopg.connect(url, autocommit=True)

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []

    def clear(self) -> None:
        self.sql(
            "TRUNCATE events, lead_aliases, deals, leads, accounts, service_accounts, "
            "personal_access_tokens, org_unit_memberships, users, org_units CASCADE"
        )

    # --------------------------------------------------------------- rows --

    def org_unit(self, name: str | None = None) -> str:
        unit = str(uuid.uuid4())
        self.sql(
            "INSERT INTO org_units (id, name) VALUES (%s, %s)", (unit, name or f"unit {unit[:4]}")
        )
        return unit

    def account(self, org_unit: str, name: str | None = "Acme Co") -> str:
        account = str(uuid.uuid4())
        self.sql(
            "INSERT INTO accounts (id, org_unit_id, name) VALUES (%s, %s, %s)",
            (account, org_unit, name),
        )
        return account

    def lead(
        self,
        org_unit: str,
        *,
        account: str | None = None,
        level: str | None = None,
        score: int | None = None,
        metadata: dict[str, Any] | None = None,
        lead_id: str | None = None,
    ) -> str:
        lead = lead_id or str(uuid.uuid4())
        self.sql(
            "INSERT INTO leads (id, org_unit_id, account_id, score, engagement_level, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (lead, org_unit, account, score, level, Jsonb(metadata or {})),
        )
        return lead

    def alias(
        self,
        org_unit: str,
        lead: str,
        kind: str,
        value: str,
        *,
        primary: bool = False,
        created_at: datetime | None = None,
        alias_id: str | None = None,
    ) -> str:
        alias = alias_id or str(uuid.uuid4())
        self.sql(
            "INSERT INTO lead_aliases (id, org_unit_id, lead_id, kind, value, is_primary, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, now()))",
            (alias, org_unit, lead, kind, value, primary, created_at),
        )
        return alias

    def deal(
        self,
        org_unit: str,
        account: str | None,
        *,
        amount: str | Decimal | None = None,
        stage: str | None = "negotiation",
        created_at: datetime | None = None,
        deal_id: str | None = None,
    ) -> str:
        deal = deal_id or str(uuid.uuid4())
        self.sql(
            "INSERT INTO deals (id, org_unit_id, account_id, name, stage, amount, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, now()))",
            (deal, org_unit, account, "deal", stage, amount, created_at),
        )
        return deal

    def event(
        self,
        org_unit: str,
        *,
        lead: str | None = None,
        occurred_at: datetime | str = "2026-03-10T12:00:00",
        metadata: dict[str, Any] | None = None,
        normalized: bool = False,
        parent: bool = False,
        **utm: Any,
    ) -> int:
        """An event; keyword arguments campaign=, source=, medium= set utm_* keys."""
        meta = dict(metadata or {})
        for key, value in utm.items():
            meta[f"utm_{key}"] = value
        when = at(occurred_at) if isinstance(occurred_at, str) else occurred_at
        rows = self.sql(
            "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata, "
            "normalized, normalized_parent) VALUES (%s, %s, 'page_view', %s, %s, %s, %s) "
            "RETURNING id",
            (org_unit, lead, when, Jsonb(meta), normalized, parent),
        )
        return int(rows[0][0])

    # -------------------------------------------------------- credentials --

    def user(self, *, default_org_unit: str | None = None, email: str | None = None) -> str:
        user = str(uuid.uuid4())
        self.sql(
            "INSERT INTO users (id, email, default_org_unit_id) VALUES (%s, %s, %s)",
            (user, email or f"user{next(_counter)}-{user[:6]}@example.com", default_org_unit),
        )
        return user

    def member(self, user: str, org_unit: str, role: str = "analyst") -> None:
        self.sql(
            "INSERT INTO org_unit_memberships (org_unit_id, user_id, role) VALUES (%s, %s, %s)",
            (org_unit, user, role),
        )

    def token(
        self, user: str, *, expires_at: datetime | None = None, text: str | None = None
    ) -> str:
        """A personal access token for ``user``; returns the Authorization header value."""
        token = text or "test-" + secrets.token_hex(16)
        token_id = str(uuid.uuid4())
        self.sql(
            "INSERT INTO personal_access_tokens (id, user_id, name, token_prefix, token_sha256, "
            "expires_at) VALUES (%s, %s, 'test', %s, %s, %s)",
            (token_id, user, token[:8], hashlib.sha256(token.encode()).digest(), expires_at),
        )
        self.tokens[token_id] = token
        return f"Bearer {token}"

    def service_account(self, org_unit: str, *, scopes: list[str] | None = None) -> tuple[str, str]:
        """A service account; returns (client_id, Authorization header value)."""
        client_id = "sa-" + secrets.token_hex(6)
        secret = secrets.token_hex(16)
        self.sql(
            "INSERT INTO service_accounts (id, org_unit_id, name, client_id, secret_sha256, scopes) "
            "VALUES (%s, %s, 'test', %s, %s, %s)",
            (
                str(uuid.uuid4()),
                org_unit,
                client_id,
                hashlib.sha256(secret.encode()).digest(),
                scopes if scopes is not None else ["analytics:read"],
            ),
        )
        return client_id, basic(client_id, secret)

    def reader(self, org_unit: str) -> dict[str, str]:
        """Headers of a new analyst of ``org_unit`` reading it."""
        user = self.user(default_org_unit=org_unit)
        self.member(user, org_unit, "analyst")
        return {"Authorization": self.token(user)}

    # ---------------------------------------------------------- reference --

    def reference_campaigns(
        self, org_unit: str, key: str, start: datetime | None, end: datetime | None
    ) -> list[dict[str, Any]]:
        rows = self.sql(
            REFERENCE_CAMPAIGNS, {"ou": org_unit, "key": key, "start": start, "end": end}
        )
        names = [
            "name",
            "total_events",
            "unique_leads",
            "mql_count",
            "total_points",
            "deals_count",
            "pipeline_value",
            "closed_won_value",
            "first_event_at",
            "last_event_at",
        ]
        return [normalized(dict(zip(names, row, strict=True))) for row in rows]

    def reference_leads(
        self, org_unit: str, key: str, value: str, start: datetime | None, end: datetime | None
    ) -> list[dict[str, Any]]:
        rows = self.sql(
            REFERENCE_LEADS,
            {"ou": org_unit, "key": key, "value": value, "start": start, "end": end},
        )
        names = [
            "lead_id",
            "display_name",
            "email",
            "first_name",
            "last_name",
            "title",
            "company",
            "score",
            "level",
            "account_id",
            "account_name",
            "deal_stage",
            "deal_amount",
            "first_touch_at",
            "last_touch_at",
        ]
        return [normalized(dict(zip(names, row, strict=True))) for row in rows]

    # ------------------------------------------- reference: dashboards.md --

    def reference_filtered_campaigns(
        self,
        org_unit: str,
        key: str,
        start: datetime | None,
        end: datetime | None,
        filters: Filters | None = None,
    ) -> list[dict[str, Any]]:
        """The aggregate rows of ``key`` with ``filters`` (dashboards.md), by total_events, then name."""
        rows = self.sql(
            REFERENCE_FILTERED_CAMPAIGNS, _dashboard_params(org_unit, key, start, end, filters)
        )
        return [normalized(dict(zip(AGGREGATE_FIELDS, row[1:], strict=True))) for row in rows]

    def reference_totals(
        self,
        org_unit: str,
        key: str,
        start: datetime | None,
        end: datetime | None,
        filters: Filters | None = None,
    ) -> dict[str, Any]:
        """The totals of ``key`` with ``filters``: every value as one, each lead and deal once."""
        params = _dashboard_params(org_unit, key, start, end, filters)
        (values,) = self.sql(REFERENCE_VALUES, params)[0]
        rows = self.sql(REFERENCE_TOTALS, params)
        if not rows:
            zero = dict.fromkeys(AGGREGATE_FIELDS[1:8], 0)
            return normalized(
                {"values": values, **zero, "first_event_at": None, "last_event_at": None}
            )
        fields = dict(zip(AGGREGATE_FIELDS, rows[0][1:], strict=True))
        del fields["name"]
        return normalized({"values": values, **fields})

    def reference_timeseries(
        self,
        org_unit: str,
        key: str,
        start: datetime | None,
        end: datetime | None,
        filters: Filters | None,
        tz: str,
        interval: str,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The metrics of each (value, bucket) with events, by value and the local
        date (YYYY-MM-DD) on which PostgreSQL's own ``date_trunc`` in ``tz`` starts
        the bucket of each event."""
        params = {
            **_dashboard_params(org_unit, key, start, end, filters),
            "tz": tz,
            "interval": interval,
        }
        out = {}
        for row in self.sql(REFERENCE_TIMESERIES, params):
            fields = normalized(dict(zip(AGGREGATE_FIELDS, row[1:], strict=True)))
            out[fields.pop("name"), row[0]] = {name: fields[name] for name in SERIES_FIELDS}
        return out

    def reference_lead_page(
        self,
        org_unit: str,
        key: str,
        value: str,
        start: datetime | None,
        end: datetime | None,
        filters: Filters | None,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the drilldown of ``value`` with ``filters``, and the number of its leads."""
        params = {
            **_dashboard_params(org_unit, key, start, end, filters),
            "value": value,
            "offset": offset,
            "limit": limit,
        }
        rows = self.sql(REFERENCE_LEAD_PAGE, params)
        (total,) = self.sql(REFERENCE_LEAD_COUNT, params)[0]
        return [normalized(dict(zip(LEAD_FIELDS, row, strict=True))) for row in rows], total

    def zone_day(self, day: date, tz: str, *, end: bool) -> datetime:
        """PostgreSQL's first instant of ``day`` in ``tz`` (local midnight read in the
        zone), or with ``end`` the instant before the next day's."""
        statement = (
            "SELECT (%(day)s::date + 1)::timestamp AT TIME ZONE %(tz)s - interval '1 microsecond'"
            if end
            else "SELECT %(day)s::date::timestamp AT TIME ZONE %(tz)s"
        )
        moment: datetime = self.sql(statement, {"day": day, "tz": tz})[0][0]
        return moment


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def normalized(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-comparable values: RFC 3339 strings, Decimal money, str UUIDs."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            out[name] = rfc3339(value)
        elif isinstance(value, uuid.UUID):
            out[name] = str(value)
        elif isinstance(value, Decimal):
            out[name] = value.normalize() if value else Decimal(0)
        else:
            out[name] = value
    return out


def from_json(row: dict[str, Any]) -> dict[str, Any]:
    """Make a decoded API row comparable with :func:`normalized` ones."""
    return {
        name: value.normalize()
        if isinstance(value, Decimal) and value
        else (Decimal(0) if isinstance(value, Decimal) else value)
        for name, value in row.items()
    }


_COUNTING = """
    SELECT e.id, e.lead_id, e.occurred_at, e.metadata, e.metadata ->> %(key)s AS v
    FROM events e
    WHERE e.org_unit_id = %(ou)s
      AND NOT (e.normalized AND NOT e.normalized_parent)
      AND e.metadata ->> %(key)s IS NOT NULL
      AND e.metadata ->> %(key)s <> ''
      AND (%(start)s::timestamptz IS NULL OR e.occurred_at >= %(start)s::timestamptz)
      AND (%(end)s::timestamptz IS NULL OR e.occurred_at <= %(end)s::timestamptz)
"""

REFERENCE_CAMPAIGNS = f"""
WITH counting AS ({_COUNTING}),
totals AS (
    SELECT v,
           count(*) AS total_events,
           count(DISTINCT lead_id) AS unique_leads,
           sum(CASE WHEN abs(raw_points) <= 1000000000 THEN raw_points ELSE 0 END)::bigint AS total_points,
           min(occurred_at) AS first_event_at,
           max(occurred_at) AS last_event_at
    FROM (
        SELECT c.v, c.lead_id, c.occurred_at,
               CASE
                   WHEN jsonb_typeof(c.metadata -> 'score_delta') = 'number'
                       THEN round((c.metadata ->> 'score_delta')::numeric)
                   WHEN jsonb_typeof(c.metadata -> 'score_delta') = 'string'
                        AND (c.metadata ->> 'score_delta') ~ '^-?[0-9]+(\\.[0-9]+)?$'
                       THEN round((c.metadata ->> 'score_delta')::numeric)
               END AS raw_points
        FROM counting c
    ) AS scored
    GROUP BY v
),
value_leads AS (SELECT DISTINCT v, lead_id FROM counting WHERE lead_id IS NOT NULL),
mqls AS (
    SELECT vl.v, count(*) AS mql_count
    FROM value_leads vl JOIN leads l ON l.id = vl.lead_id
    WHERE lower(btrim(l.engagement_level, E' \\t\\n\\r')) IN ('warm', 'hot')
    GROUP BY vl.v
),
value_deals AS (
    SELECT DISTINCT vl.v, d.id, d.amount, d.stage
    FROM value_leads vl
    JOIN leads l ON l.id = vl.lead_id
    JOIN deals d ON d.account_id = l.account_id AND d.org_unit_id = %(ou)s
),
deal_sums AS (
    SELECT v, count(*) AS deals_count,
           COALESCE(sum(amount), 0) AS pipeline_value,
           COALESCE(sum(amount) FILTER (WHERE lower(btrim(stage, E' \\t\\n\\r')) IN ('closedwon', 'closed_won')), 0)
               AS closed_won_value
    FROM value_deals GROUP BY v
)
SELECT t.v, t.total_events, t.unique_leads, COALESCE(m.mql_count, 0), t.total_points,
       COALESCE(d.deals_count, 0), COALESCE(d.pipeline_value, 0), COALESCE(d.closed_won_value, 0),
       t.first_event_at, t.last_event_at
FROM totals t
LEFT JOIN mqls m ON m.v = t.v
LEFT JOIN deal_sums d ON d.v = t.v
ORDER BY t.total_events DESC, t.v COLLATE "C"
"""

REFERENCE_LEADS = f"""
WITH counting AS ({_COUNTING}),
touches AS (
    SELECT lead_id, min(occurred_at) AS first_touch, max(occurred_at) AS last_touch
    FROM counting WHERE v = %(value)s AND lead_id IS NOT NULL GROUP BY lead_id
)
SELECT t.lead_id::text,
       (SELECT a.value FROM lead_aliases a
        WHERE a.lead_id = t.lead_id
          AND a.kind IN ('email', 'phone', 'social', 'external_id', 'cookie')
        ORDER BY array_position(ARRAY['email', 'phone', 'social', 'external_id', 'cookie'], a.kind),
                 a.is_primary DESC, a.created_at, a.id
        LIMIT 1),
       (SELECT a.value FROM lead_aliases a WHERE a.lead_id = t.lead_id AND a.kind = 'email'
        ORDER BY a.is_primary DESC, a.created_at, a.id LIMIT 1),
       COALESCE(l.metadata ->> 'first_name', l.metadata ->> 'firstname'),
       COALESCE(l.metadata ->> 'last_name', l.metadata ->> 'lastname'),
       l.metadata ->> 'title',
       l.metadata ->> 'company',
       COALESCE(l.score, 0),
       l.engagement_level,
       l.account_id::text,
       acc.name,
       (SELECT d.stage FROM deals d WHERE d.account_id = l.account_id
        ORDER BY d.created_at DESC, d.id DESC LIMIT 1),
       (SELECT d.amount FROM deals d WHERE d.account_id = l.account_id
        ORDER BY d.created_at DESC, d.id DESC LIMIT 1),
       t.first_touch,
       t.last_touch
FROM touches t
LEFT JOIN leads l ON l.id = t.lead_id
LEFT JOIN accounts acc ON acc.id = l.account_id
ORDER BY t.first_touch DESC, t.lead_id
LIMIT 500
"""


def backend_waiting_on_lock(url: str) -> int | None:
    """The pid of the service's backend while it waits on a lock, if one does."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'kenbun-analytics' "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] if row else None


def until(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}")


# ------------------------------------------------------ dashboards.md --

Filters = dict[str, list[str]]
"""Per UTM key (``campaign``, ``source``, ``medium``), the values an event must have."""

AGGREGATE_FIELDS = (
    "name",
    "total_events",
    "unique_leads",
    "mql_count",
    "total_points",
    "deals_count",
    "pipeline_value",
    "closed_won_value",
    "first_event_at",
    "last_event_at",
)
SERIES_FIELDS = AGGREGATE_FIELDS[1:8]
LEAD_FIELDS = (
    "lead_id",
    "display_name",
    "email",
    "first_name",
    "last_name",
    "title",
    "company",
    "score",
    "level",
    "account_id",
    "account_name",
    "deal_stage",
    "deal_amount",
    "first_touch_at",
    "last_touch_at",
)


def _dashboard_params(
    org_unit: str, key: str, start: datetime | None, end: datetime | None, filters: Filters | None
) -> dict[str, Any]:
    given = filters or {}
    return {
        "ou": org_unit,
        "key": key,
        "start": start,
        "end": end,
        **{
            f"f_{name}": [v for v in given.get(name, []) if v]
            for name in ("campaign", "source", "medium")
        },
    }


_FILTERED = """
    SELECT e.id, e.lead_id, e.occurred_at, e.metadata, e.metadata ->> %(key)s AS v
    FROM events e
    WHERE e.org_unit_id = %(ou)s
      AND NOT (e.normalized AND NOT e.normalized_parent)
      AND e.metadata ->> %(key)s IS NOT NULL
      AND e.metadata ->> %(key)s <> ''
      AND (%(start)s::timestamptz IS NULL OR e.occurred_at >= %(start)s::timestamptz)
      AND (%(end)s::timestamptz IS NULL OR e.occurred_at <= %(end)s::timestamptz)
      AND (cardinality(%(f_campaign)s::text[]) = 0 OR e.metadata ->> 'utm_campaign' = ANY(%(f_campaign)s::text[]))
      AND (cardinality(%(f_source)s::text[]) = 0 OR e.metadata ->> 'utm_source' = ANY(%(f_source)s::text[]))
      AND (cardinality(%(f_medium)s::text[]) = 0 OR e.metadata ->> 'utm_medium' = ANY(%(f_medium)s::text[]))
"""


def _grouped(group: str, cell: str) -> str:
    """The aggregate rules of semantics.md over the filtered counting events, one
    row per (``group``, ``cell``): ``group`` is the row's name, ``cell`` splits it
    further (a bucket) or is constant. Rows: cell, then the aggregate fields."""
    return f"""
WITH counting AS (
    SELECT f.*, {group} AS g, {cell} AS b FROM ({_FILTERED}) AS f
),
totals AS (
    SELECT g, b,
           count(*) AS total_events,
           count(DISTINCT lead_id) AS unique_leads,
           sum(CASE WHEN abs(raw_points) <= 1000000000 THEN raw_points ELSE 0 END)::bigint AS total_points,
           min(occurred_at) AS first_event_at,
           max(occurred_at) AS last_event_at
    FROM (
        SELECT c.g, c.b, c.lead_id, c.occurred_at,
               CASE
                   WHEN jsonb_typeof(c.metadata -> 'score_delta') = 'number'
                       THEN round((c.metadata ->> 'score_delta')::numeric)
                   WHEN jsonb_typeof(c.metadata -> 'score_delta') = 'string'
                        AND (c.metadata ->> 'score_delta') ~ '^-?[0-9]+(\\.[0-9]+)?$'
                       THEN round((c.metadata ->> 'score_delta')::numeric)
               END AS raw_points
        FROM counting c
    ) AS scored
    GROUP BY g, b
),
cell_leads AS (SELECT DISTINCT g, b, lead_id FROM counting WHERE lead_id IS NOT NULL),
mqls AS (
    SELECT cl.g, cl.b, count(*) AS mql_count
    FROM cell_leads cl JOIN leads l ON l.id = cl.lead_id
    WHERE lower(btrim(l.engagement_level, E' \\t\\n\\r')) IN ('warm', 'hot')
    GROUP BY cl.g, cl.b
),
cell_deals AS (
    SELECT DISTINCT cl.g, cl.b, d.id, d.amount, d.stage
    FROM cell_leads cl
    JOIN leads l ON l.id = cl.lead_id
    JOIN deals d ON d.account_id = l.account_id AND d.org_unit_id = %(ou)s
),
deal_sums AS (
    SELECT g, b, count(*) AS deals_count,
           COALESCE(sum(amount), 0) AS pipeline_value,
           COALESCE(sum(amount) FILTER (WHERE lower(btrim(stage, E' \\t\\n\\r')) IN ('closedwon', 'closed_won')), 0)
               AS closed_won_value
    FROM cell_deals GROUP BY g, b
)
SELECT t.b, t.g, t.total_events, t.unique_leads, COALESCE(m.mql_count, 0), t.total_points,
       COALESCE(d.deals_count, 0), COALESCE(d.pipeline_value, 0), COALESCE(d.closed_won_value, 0),
       t.first_event_at, t.last_event_at
FROM totals t
LEFT JOIN mqls m ON m.g = t.g AND m.b = t.b
LEFT JOIN deal_sums d ON d.g = t.g AND d.b = t.b
ORDER BY t.total_events DESC, t.g COLLATE "C", t.b
"""


REFERENCE_FILTERED_CAMPAIGNS = _grouped("f.v", "''")
REFERENCE_TOTALS = _grouped("''", "''")
REFERENCE_VALUES = f"SELECT count(DISTINCT v) FROM ({_FILTERED}) AS f"
REFERENCE_TIMESERIES = _grouped(
    "f.v",
    "to_char(date_trunc(%(interval)s, f.occurred_at AT TIME ZONE %(tz)s), 'YYYY-MM-DD')",
)
REFERENCE_LEAD_COUNT = f"""
SELECT count(DISTINCT lead_id) FROM ({_FILTERED}) AS f WHERE v = %(value)s
"""
REFERENCE_LEAD_PAGE = REFERENCE_LEADS.replace(_COUNTING, _FILTERED).replace(
    "LIMIT 500", "LIMIT %(limit)s OFFSET %(offset)s"
)

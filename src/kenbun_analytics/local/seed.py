"""A realistic kenbun world of any size, generated inside PostgreSQL.

Deterministic for a given ``seed`` and ``anchor`` (the day the event history
ends, today by default): every random choice is ``hashint8extended(row, stream)``, so no state
is carried between rows and the same call writes the same rows. Triggers are
switched off for the bulk writes when the role may (superuser), and one
change-log marker then tells running services to reload everything.

Shape: one large org unit (90% of the events) and two small ones; a lead per
10 events, an account per 100, a deal per 200; skewed campaign values (up to
2,000) with casing and whitespace drift, 50 sources, 10 mediums; 5% of events
are the canonical half of a normalized pair whose duplicate is written too.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from kenbun_analytics.source.postgres import Source

_UNITS = (("Northwind Demand Gen", 0.90), ("Contoso EMEA", 0.06), ("Fabrikam Labs", 0.04))
_SOURCES = [
    "google",
    "linkedin",
    "facebook",
    "newsletter",
    "bing",
    "twitter",
    "youtube",
    "reddit",
    "g2",
    "capterra",
    "partner",
    "webinar",
    "podcast",
    "direct",
    "quora",
    "medium",
    "github",
    "hackernews",
    "producthunt",
    "instagram",
] + [f"referral-{n:02d}" for n in range(30)]
_MEDIUMS = [
    "cpc",
    "email",
    "social",
    "organic",
    "display",
    "referral",
    "video",
    "affiliate",
    "event",
    "sms",
]
_WORDS = [
    "spring",
    "summer",
    "autumn",
    "winter",
    "launch",
    "webinar",
    "ebook",
    "trial",
    "retarget",
    "brand",
    "abm",
    "nurture",
    "promo",
    "summit",
    "demo",
    "pricing",
]


@dataclass(frozen=True, slots=True)
class SeedResult:
    org_unit_ids: list[str]
    events: int


def org_unit_id(seed: int, index: int) -> str:
    """The id of the ``index``-th seeded org unit; stable for a seed."""
    return str(uuid.UUID(hashlib.md5(f"kenbun-seed-{seed}-ou-{index}".encode()).hexdigest()))  # noqa: S324 - an id, not a secret


class _Random:
    """SQL expressions for deterministic pseudo-random choices, one stream per number."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def r(self, row: str, stream: int) -> str:
        """Uniform in [0, 1) for ``row`` in ``stream``."""
        bits = f"hashint8extended({row}, {self.seed * 1000 + stream}) & 2147483647"
        return f"(({bits})::float8 / 2147483648.0)"

    def pick(self, values: str, row: str, stream: int, power: float = 1.0) -> str:
        """An element of the SQL array ``values``, skewed to the first when ``power`` > 1."""
        position = f"floor(power({self.r(row, stream)}, {power}) * cardinality({values}))::int"
        return f"({values})[1 + {position}]"

    def index(self, stream: int, count: int, power: float = 1.0) -> str:
        """A 1-based index up to ``count`` for row ``i``, skewed to 1 when ``power`` > 1."""
        return f"1 + floor(power({self.r('i', stream)}, {power}) * {count})::int"

    def key(self, kind: str, row: str) -> str:
        """A stable UUID for the ``row``-th thing of ``kind``."""
        return f"md5('{self.seed}-{kind}-' || ({row}))::uuid"


def _array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def seed_world(
    source: Source,
    *,
    events: int,
    seed: int = 1,
    anchor: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Write an org-unit world of about ``events`` events (plus normalized duplicates)."""
    anchor = anchor or datetime.now(UTC).date()
    say = progress or (lambda _: None)
    superuser = bool(
        source.query("check role", "SELECT usesuper FROM pg_user WHERE usename = current_user")
        .column(0)[0]
        .as_py()
    )
    units = []
    for index, (name, share) in enumerate(_UNITS):
        unit = org_unit_id(seed, index)
        units.append(unit)
        n_events = max(1, round(events * share))
        statements = _statements(
            seed=seed * 10 + index, unit=unit, name=name, n_events=n_events, anchor=anchor
        )
        for label, sql in statements:
            started = time.monotonic()
            _run(source, sql, superuser=superuser)
            say(f"{name}: {label} ({time.monotonic() - started:.1f} s)")
    source.execute(
        "mark seeded data",
        "INSERT INTO kenbun_analytics_changes (table_name, org_unit_id) VALUES ('seed', NULL)",
    )
    # What autovacuum does soon after a bulk insert: fresh statistics, and the
    # visibility map that lets a load read each lead's aliases from their index alone.
    source.execute("vacuum", "VACUUM (ANALYZE)")
    return SeedResult(org_unit_ids=units, events=events)


def _run(source: Source, sql: str, *, superuser: bool) -> None:
    if superuser:
        source.execute("seed", "SET session_replication_role = replica")
    try:
        source.execute("seed", sql)
    finally:
        if superuser:
            source.execute("seed", "SET session_replication_role = DEFAULT")


def _statements(
    *, seed: int, unit: str, name: str, n_events: int, anchor: date
) -> list[tuple[str, str]]:
    n_leads = max(1, n_events // 10)
    n_accounts = max(1, n_events // 100)
    n_deals = max(1, n_events // 200)
    n_campaigns = max(5, min(2000, n_events // 50))

    rnd = _Random(seed)
    r, pick, index, key = rnd.r, rnd.pick, rnd.index, rnd.key

    end = f"'{anchor.isoformat()}'::timestamptz"
    return [
        (
            "org unit",
            f"INSERT INTO org_units (id, name) VALUES ('{unit}', '{name}') ON CONFLICT DO NOTHING",
        ),
        (
            "accounts",
            f"""
INSERT INTO accounts (id, org_unit_id, name, domain, created_at)
SELECT {key("acc", "i")}, '{unit}',
       CASE WHEN {r("i", 1)} < 0.05 THEN NULL ELSE initcap({pick(_array(_WORDS), "i", 2)}) || ' ' || i || ' Inc' END,
       'acct' || i || '.example.com', {end} - interval '400 days' * {r("i", 3)}
FROM generate_series(1, {n_accounts}) AS i ON CONFLICT DO NOTHING""",
        ),
        (
            "leads",
            f"""
INSERT INTO leads (id, org_unit_id, account_id, score, engagement_level, metadata, created_at)
SELECT {key("lead", "i")}, '{unit}',
       CASE WHEN {r("i", 11)} < 0.7 THEN {key("acc", index(12, n_accounts))} END,
       CASE WHEN {r("i", 13)} < 0.2 THEN NULL ELSE floor({r("i", 14)} * 120)::int END,
       ({_array(["Cold", "Cold", "Warm", "Hot", "warm ", " HOT", "Lukewarm"])} || ARRAY[NULL]::text[])[1 + floor({r("i", 15)} * 8)::int],
       jsonb_strip_nulls(jsonb_build_object(
           CASE WHEN {r("i", 16)} < 0.5 THEN 'first_name' ELSE 'firstname' END,
           ({_array(["Rachel", "Omar", "Mei", "Luis", "Anna", "Kofi", "Sven", "Priya"])})[1 + floor({r("i", 17)} * 8)::int],
           CASE WHEN {r("i", 18)} < 0.5 THEN 'last_name' ELSE 'lastname' END,
           ({_array(["Kim", "Haddad", "Chen", "Garcia", "Novak", "Mensah", "Berg", "Rao"])})[1 + floor({r("i", 19)} * 8)::int],
           'title', CASE WHEN {r("i", 20)} < 0.8 THEN ({_array(["Director of Demand Generation", "VP Marketing", "CMO", "Growth Lead", "Data Analyst"])})[1 + floor({r("i", 21)} * 5)::int] END,
           'company', CASE WHEN {r("i", 22)} < 0.8 THEN 'Company ' || (1 + floor({r("i", 23)} * {n_accounts})::int) END)),
       {end} - interval '400 days' * {r("i", 24)}
FROM generate_series(1, {n_leads}) AS i ON CONFLICT DO NOTHING""",
        ),
        (
            "lead aliases",
            f"""
INSERT INTO lead_aliases (id, org_unit_id, lead_id, kind, value, is_primary, created_at)
SELECT {key("alias", "i || '-' || j")}, '{unit}', {key("lead", "i")},
       ({_array(["email", "email", "phone", "social", "external_id", "cookie"])})[1 + floor({r("i * 4 + j", 31)} * 6)::int],
       'lead' || i || '-' || j || '@example.com',
       {r("i * 4 + j", 32)} < 0.3,
       {end} - interval '400 days' * {r("i * 4 + j", 33)}
FROM generate_series(1, {n_leads}) AS i, generate_series(1, 3) AS j
WHERE {r("i * 4 + j", 34)} < 0.6 ON CONFLICT DO NOTHING""",
        ),
        (
            "deals",
            f"""
INSERT INTO deals (id, org_unit_id, account_id, name, stage, amount, created_at)
SELECT {key("deal", "i")}, '{unit}', {key("acc", index(41, n_accounts))},
       'Deal ' || i,
       ({_array(["prospecting", "negotiation", "closed_won", "ClosedWon", " closedwon ", "closed_lost"])} || ARRAY[NULL]::text[])[1 + floor({r("i", 42)} * 7)::int],
       CASE WHEN {r("i", 43)} < 0.1 THEN NULL ELSE round((1000 + {r("i", 44)} * 99000)::numeric, 2) END,
       {end} - interval '365 days' * {r("i", 45)}
FROM generate_series(1, {n_deals}) AS i ON CONFLICT DO NOTHING""",
        ),
        (
            "events",
            _events_sql(
                rnd, unit=unit, n_events=n_events, n_leads=n_leads, n_campaigns=n_campaigns, end=end
            ),
        ),
    ]


def _events_sql(
    rnd: _Random, *, unit: str, n_events: int, n_leads: int, n_campaigns: int, end: str
) -> str:
    r, pick, index, key = rnd.r, rnd.pick, rnd.index, rnd.key
    words = _array(_WORDS)
    campaign = f"(({words})[1 + (c % 16)] || '-' || ({words})[1 + ((c / 16) % 16)] || '-' || (2025 + c % 2) || '-' || c)"
    drifted = f"""CASE WHEN {r("i", 51)} < 0.02 THEN upper({campaign})
                     WHEN {r("i", 51)} < 0.03 THEN {campaign} || ' '
                     WHEN {r("i", 51)} < 0.035 THEN initcap({campaign})
                     ELSE {campaign} END"""
    score = f"""CASE WHEN s < 0.45 THEN to_jsonb(1 + floor({r("i", 53)} * 20)::int)
                    WHEN s < 0.55 THEN to_jsonb((1 + floor({r("i", 53)} * 20)::int)::text)
                    WHEN s < 0.60 THEN to_jsonb(2.5)
                    WHEN s < 0.63 THEN to_jsonb('-2.5'::text)
                    WHEN s < 0.65 THEN to_jsonb('n/a'::text) END"""
    body = f"""
SELECT i, c, s,
       CASE WHEN {r("i", 54)} < 0.03 THEN NULL ELSE {key("lead", index(55, n_leads, 1.5))} END AS lead_id,
       {end} - interval '180 days' * {r("i", 56)} AS occurred_at,
       jsonb_strip_nulls(jsonb_build_object(
           'utm_campaign', CASE WHEN {r("i", 57)} < 0.05 THEN NULL ELSE {drifted} END,
           'utm_source', CASE WHEN {r("i", 58)} < 0.03 THEN NULL ELSE {pick(_array(_SOURCES), "i", 59, 2.0)} END,
           'utm_medium', CASE WHEN {r("i", 60)} < 0.03 THEN NULL ELSE {pick(_array(_MEDIUMS), "i", 61, 1.5)} END,
           'score_delta', {score})) AS metadata,
       {r("i", 62)} < 0.05 AS paired
FROM (SELECT i, floor(power({r("i", 50)}, 3) * {n_campaigns})::int AS c, {r("i", 52)} AS s
      FROM generate_series(1, {n_events}) AS i) AS base"""
    types = _array(["page_view", "form_submit", "email_click", "webinar_attend", "ad_click"])
    return f"""
WITH generated AS ({body})
INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata, normalized, normalized_parent)
SELECT '{unit}'::uuid, lead_id, ({types})[1 + i % 5], occurred_at, metadata, paired, paired FROM generated
UNION ALL
SELECT '{unit}'::uuid, lead_id, ({types})[1 + i % 5], occurred_at, metadata, true, false FROM generated WHERE paired"""


def terminal_progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"  seeded {message}", file=sys.stderr, flush=True)

"""The baselines our aggregate is measured against, each giving the same rows.

1. PostgreSQL: the straight-SQL formulation of the rules over the source
   tables (the oracle of the test suite, ``support/world.py``).
2. DuckDB: the best SQL we could write, over the same Arrow tables the
   snapshot is loaded from.
3. Naive Polars: join and group the raw snapshot per request, without the
   prepared layout (dense codes, pair indices).

Every function returns rows as tuples (name, total_events, unique_leads,
mql_count, total_points, deals_count, pipeline_value, closed_won_value,
first_event_at, last_event_at) in the endpoint's order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl
import psycopg
import pyarrow as pa

from kenbun_analytics.engine.frames import MONEY
from support.world import REFERENCE_CAMPAIGNS

Row = tuple[Any, ...]
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
UTM_KEY = {"campaign": "utm_campaign", "source": "utm_source", "medium": "utm_medium"}


def normalize(rows: list[Row]) -> list[Row]:
    """Comparable rows: Decimal money without trailing zeros, aware datetimes."""
    return [
        tuple(
            (value.normalize() if value else Decimal(0)) if isinstance(value, Decimal) else value
            for value in row
        )
        for row in rows
    ]


def postgres(
    url: str, org_unit_id: str, group_by: str, start: datetime | None, end: datetime | None
) -> list[Row]:
    with psycopg.connect(url) as connection:
        connection.execute("SET max_parallel_workers_per_gather = 2")
        rows = connection.execute(
            REFERENCE_CAMPAIGNS,
            {"ou": org_unit_id, "key": UTM_KEY[group_by], "start": start, "end": end},
        ).fetchall()
    return [tuple(row) for row in rows]


DUCKDB_SQL = """
WITH w AS (
    SELECT {key} AS name, lead_key, occurred_at, points FROM events
    WHERE {key} IS NOT NULL AND occurred_at >= $start AND occurred_at <= $end
), totals AS (
    SELECT name, count(*) AS total_events, count(DISTINCT lead_key) AS unique_leads,
           sum(points) AS total_points, min(occurred_at) AS first_event_at,
           max(occurred_at) AS last_event_at
    FROM w GROUP BY name
), value_leads AS (
    SELECT DISTINCT name, lead_key FROM w WHERE lead_key IS NOT NULL
), facts AS (
    SELECT v.name, l.is_mql, l.account_id FROM value_leads v JOIN leads l USING (lead_key)
), mql AS (
    SELECT name, count(*) FILTER (WHERE is_mql) AS mql_count FROM facts GROUP BY name
), deal_sums AS (
    SELECT f.name, sum(a.deals_count) AS deals_count, sum(a.pipeline_value) AS pipeline_value,
           sum(a.closed_won_value) AS closed_won_value
    FROM (SELECT DISTINCT name, account_id FROM facts WHERE account_id IS NOT NULL) f
    JOIN accounts a USING (account_id) GROUP BY f.name
)
SELECT t.name, t.total_events, t.unique_leads, COALESCE(m.mql_count, 0), t.total_points,
       COALESCE(d.deals_count, 0), COALESCE(d.pipeline_value, 0), COALESCE(d.closed_won_value, 0),
       t.first_event_at, t.last_event_at
FROM totals t LEFT JOIN mql m USING (name) LEFT JOIN deal_sums d USING (name)
ORDER BY t.total_events DESC, t.name
"""


class DuckDB:
    """DuckDB over the Arrow tables of one org unit's snapshot load."""

    def __init__(self, events: pa.Table, leads: pa.Table, accounts: pa.Table) -> None:
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        for name, table in (("events", events), ("leads", leads), ("accounts", accounts)):
            self.connection.register(f"{name}_arrow", table)
            self.connection.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
        self.connection.execute(
            "ALTER TABLE accounts ALTER pipeline_value TYPE DECIMAL(38,2); "
            "ALTER TABLE accounts ALTER closed_won_value TYPE DECIMAL(38,2)"
        )

    def campaigns(self, group_by: str, start: datetime | None, end: datetime | None) -> list[Row]:
        rows = self.connection.execute(
            DUCKDB_SQL.format(key=group_by),
            {"start": start or EARLIEST, "end": end or LATEST},
        ).fetchall()
        return [tuple(row) for row in rows]


def naive_polars(
    events: pl.DataFrame,
    leads: pl.DataFrame,
    accounts: pl.DataFrame,
    *,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
) -> list[Row]:
    """Join and group the raw snapshot per request (text values, hashed distinct counts)."""
    window = pl.lit(value=True)
    if start is not None:
        window &= pl.col("occurred_at") >= start
    if end is not None:
        window &= pl.col("occurred_at") <= end
    counted = (
        events.lazy()
        .filter(window & pl.col(group_by).is_not_null())
        .select(pl.col(group_by).alias("name"), "lead_key", "occurred_at", "points")
    )
    totals = counted.group_by("name").agg(
        pl.len().alias("total_events"),
        pl.col("lead_key").drop_nulls().n_unique().alias("unique_leads"),
        pl.col("points").sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
    )
    value_leads = (
        counted.filter(pl.col("lead_key").is_not_null())
        .select("name", "lead_key")
        .unique()
        .join(leads.lazy().select("lead_key", "is_mql", "account_id"), on="lead_key", how="left")
    )
    mqls = value_leads.group_by("name").agg(
        pl.col("is_mql").fill_null(value=False).sum().alias("mql_count")
    )
    deals = (
        value_leads.filter(pl.col("account_id").is_not_null())
        .select("name", "account_id")
        .unique()
        .join(accounts.lazy(), on="account_id")
        .group_by("name")
        .agg(
            pl.col("deals_count").sum(),
            pl.col("pipeline_value").sum().cast(MONEY),
            pl.col("closed_won_value").sum().cast(MONEY),
        )
    )
    zero = pl.lit(0).cast(MONEY)
    frame = (
        totals.join(mqls, on="name", how="left")
        .join(deals, on="name", how="left")
        .select(
            "name",
            "total_events",
            "unique_leads",
            pl.col("mql_count").fill_null(0),
            "total_points",
            pl.col("deals_count").fill_null(0),
            pl.col("pipeline_value").fill_null(zero),
            pl.col("closed_won_value").fill_null(zero),
            "first_event_at",
            "last_event_at",
        )
        .sort(["total_events", "name"], descending=[True, False])
    ).collect()
    return [tuple(row) for row in frame.iter_rows()]

"""How a snapshot is laid out for the queries: pure Polars transforms, no I/O.

The events of an org unit are held sorted by ``occurred_at``, so any window is
one contiguous slice found by binary search; the times themselves are held
apart, in four bytes an event (:class:`kenbun_analytics.engine.times.Times`). Texts
become dense integer codes (append-only dictionaries, so an incremental refresh
keeps existing codes): one dictionary per UTM key, one for lead ids and one for
account ids.

Distinct counts are precomputed as run boundaries. For each UTM key K and each
event, ``K_prev_lead_day`` is the day of the previous event with the same
(K value, lead): 1 for the first event's UTC day, 2 for the next, and 0 when
there is none (one byte an event while the events span under 256 days, two
under 179 years: :func:`previous_day_dtype`). In the slice [lo, hi), an event
whose previous pair event lies before ``lo`` is the first of its pair in the
window, so the distinct leads of a value are simply the count of such events;
no hashing of pairs per request. A day says "before lo" exactly, except for
the day of row lo - 1 when the window starts in the middle of it: the queries
settle that one day by hashing its pairs
(:func:`kenbun_analytics.engine.queries.campaign_rows`). ``K_prev_account_day`` does
the same for (K value, account of the lead), which makes "each reachable deal
once" a sum over the first event of every (value, account) pair.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from kenbun_analytics.engine.codes import (
    NARROW_TYPES,
    Dictionaries,
    code_dtypes,
    code_of,
    encode,
    narrowed,
)
from kenbun_analytics.engine.days import compact_days, day_totals, value_sums
from kenbun_analytics.engine.details import Details
from kenbun_analytics.engine.frames import BASE_EVENTS, CODE, KEYS, LEAD_COLUMNS, LEAD_FACTS
from kenbun_analytics.engine.index import ValueIndex, indexed, value_index
from kenbun_analytics.engine.previous import derive_events, side_by_side
from kenbun_analytics.engine.times import Times


def merge_events(base: pl.DataFrame, changed_ids: pl.Series, current: pl.DataFrame) -> pl.DataFrame:
    """Drop the changed events and merge in their current versions, in time order.

    Both sides are sorted by time already, so this is one merge pass; events at
    the same instant may then sit in another order than a full load gives them,
    which no answer depends on. Tombstones (rows without an event id, left by
    :func:`kenbun_analytics.engine.patch.patch`) are dropped here.
    """
    kept = base.filter(
        pl.col("event_id").is_not_null() & ~pl.col("event_id").is_in(changed_ids.implode())
    )
    return kept.set_sorted("occurred_at").merge_sorted(
        current.sort("occurred_at", "event_id").set_sorted("occurred_at"), key="occurred_at"
    )


def align_leads(
    lead_facts: pl.DataFrame, dictionaries: Dictionaries
) -> tuple[pl.DataFrame, Dictionaries]:
    """Per-lead facts in lead-code order, one row per code.

    A lead some event names but without facts here (in another org unit, or
    gone) gets nulls. A lead's key is not repeated here: it is the ``lead_key``
    dictionary's at the same code, and its id is spelled from it where an
    answer shows it (:func:`uuid_text`): no text per lead is held.
    """
    _, lead_keys = encode(lead_facts.get_column("lead_key"), dictionaries.lead_key)
    return facts_at(lead_keys, lead_facts), Dictionaries(
        campaign=dictionaries.campaign,
        source=dictionaries.source,
        medium=dictionaries.medium,
        lead_key=lead_keys,
    )


def facts_at(keys: pl.Series, lead_facts: pl.DataFrame) -> pl.DataFrame:
    """The facts of each of ``keys`` in order (nulls for a key without any),
    without the key itself."""
    return (
        keys.to_frame()
        .join(lead_facts, on="lead_key", how="left", maintain_order="left")
        .drop("lead_key")
    )


def align_accounts(
    leads: pl.DataFrame, account_deals: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Account codes for the leads, and deal totals in account-code order.

    Only accounts with deals get a code: a lead whose account has none reaches
    no deal, exactly as if it had no account.
    """
    accounts = account_deals.with_columns(
        pl.int_range(account_deals.height, dtype=CODE).alias("account")
    )
    leads = leads.join(
        accounts.select("account_id", "account"), on="account_id", how="left", maintain_order="left"
    )
    return leads, accounts


@dataclass(frozen=True, slots=True)
class Layout:
    """The frames of one org unit's snapshot."""

    events: pl.DataFrame
    """Sorted by time: the base columns but the time, is_mql and the previous-day
    columns (an event's account is its lead's: :func:`account_of`)."""
    times: Times
    """The time of each event, row for row with ``events`` (4 bytes an event)."""
    leads: pl.DataFrame
    """One row per lead code: the :data:`LEAD_COLUMNS`. A lead's key is the
    ``lead_key`` dictionary's at the same code, its other facts are ``details``'."""
    details: Details
    """One row per lead code: what the drilldown shows of each lead."""
    accounts: pl.DataFrame
    """One row per account code: account_id and its deal totals."""
    dictionaries: Dictionaries
    indexes: dict[str, ValueIndex]
    """Per UTM key with many values (:func:`indexed`), where each value's events are."""
    days: dict[str, pl.DataFrame]
    """Per UTM key, the sums of each whole UTC day (:func:`day_totals`, held
    narrow: :func:`compact_days`)."""
    codes: dict[str, dict[str, int]]
    """Per UTM key, the code of each value."""
    value_sums: dict[str, pl.DataFrame] = field(init=False, repr=False, compare=False)
    """Per UTM key, :func:`value_sums` of all its day totals: the whole days of
    any window that holds every day, the whole range above all, summed once
    per layout rather than per request (one row per value)."""

    def __post_init__(self) -> None:
        sums = {key: value_sums(days, key) for key, days in self.days.items()}
        object.__setattr__(self, "value_sums", sums)

    def rows_of(self, key: str, code: int | None, lo: int, hi: int) -> pl.Series:
        """The ascending rows inside [lo, hi) of the events whose ``key`` has
        ``code`` (none for None): from the value index, or by scanning the codes."""
        if code is None:
            return pl.Series("row", [], dtype=pl.UInt32)
        if key in self.indexes:
            return self.indexes[key].rows_of(code, lo, hi)
        window = self.events.get_column(key).slice(lo, hi - lo)
        return ((window == code).arg_true() + lo).cast(pl.UInt32).alias("row")


def build(
    base: pl.DataFrame,
    dictionaries: Dictionaries,
    lead_facts: pl.DataFrame,
    account_deals: pl.DataFrame,
) -> Layout:
    """Everything derived from base events, per-lead facts and per-account deal totals.

    The details are built on a thread of their own beside the derivations: they
    are one core's work (Arrow encodes a column at a time), and the derivations
    leave the cores partly idle.
    """
    leads, dictionaries = align_leads(lead_facts, dictionaries)
    leads, accounts = align_accounts(leads, account_deals)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kenbun-details") as pool:
        details = pool.submit(Details.of, leads)
        return derive(base, dictionaries, leads.select(LEAD_COLUMNS), accounts, details=details)


def with_new_leads(
    layout: Layout, dictionaries: Dictionaries, facts: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, Details]:
    """The leads and details of ``layout`` plus a row for each lead code added
    since (``dictionaries`` has them): its facts when ``facts`` (LEAD_FACTS) has
    them, else nulls."""
    known = layout.leads.height
    if dictionaries.lead_key.len() == known:
        return layout.leads, layout.details
    new_leads = facts_at(
        dictionaries.lead_key.slice(known),
        pl.DataFrame(schema=LEAD_FACTS) if facts is None else facts,
    )
    new_leads, _ = align_accounts(new_leads, layout.accounts.drop("account"))
    return (
        pl.concat([layout.leads, new_leads.select(LEAD_COLUMNS)]),
        layout.details.appended(new_leads),
    )


def derive(
    base: pl.DataFrame,
    dictionaries: Dictionaries,
    leads: pl.DataFrame,
    accounts: pl.DataFrame,
    *,
    details: Details | Future[Details],
) -> Layout:
    """The layout of ``base`` (sorted by time) and its per-lead and per-account
    frames; ``details`` may still be in the making (:func:`build`)."""
    narrow = base.cast(code_dtypes(dictionaries)).with_columns(
        narrowed(base.get_column(name)) for name in NARROW_TYPES
    )
    times = Times.of(narrow.get_column("occurred_at"))
    events = derive_events(narrow, leads, times)
    indexes = {
        key: value_index(events.get_column(key), names)
        for key in KEYS
        if indexed(names := dictionaries.of(key).len())
    }
    days = side_by_side(lambda key: compact_days(day_totals(events, accounts, key)), KEYS)
    return Layout(
        events=events.drop("account", "occurred_at"),
        times=times,
        leads=leads,
        details=details if isinstance(details, Details) else details.result(),
        accounts=accounts,
        dictionaries=dictionaries,
        indexes=indexes,
        days=dict(zip(KEYS, days, strict=True)),
        codes={key: code_of(dictionaries.of(key)) for key in KEYS},
    )


def base_of(layout: Layout) -> pl.DataFrame:
    """The base events of ``layout``, with their times and :data:`BASE_EVENTS` codes again."""
    events = layout.events.with_columns(layout.times.series())
    return events.select(BASE_EVENTS.names()).cast(BASE_EVENTS)


VIEW = 16
"""The bytes of the view Polars holds for each text, null or not; a text of at
most 12 bytes lives inside its view, a longer one in a buffer beside it."""


def series_bytes(series: pl.Series) -> int:
    """The bytes ``series`` holds. For a text column Polars' ``estimated_size``
    counts the texts but not the views, which are most of it."""
    if series.dtype != pl.String:
        return int(series.estimated_size())
    lengths = series.str.len_bytes()
    validity = (series.len() + 7) // 8 if series.null_count() else 0
    return VIEW * series.len() + int(lengths.filter(lengths > VIEW - 4).sum()) + validity


def resident_bytes(layout: Layout) -> int:
    """The bytes of every frame, index, day total, dictionary and detail of
    ``layout`` (the mappings of values to codes, a few entries per UTM value, aside)."""
    frames = (layout.events, layout.leads, layout.accounts, *layout.days.values())
    frames += tuple(layout.value_sums.values())
    series = [column for frame in frames for column in frame.iter_columns()]
    series += [part for index in layout.indexes.values() for part in (index.rows, index.offsets)]
    series += [layout.times.offsets, layout.times.buckets, layout.times.starts]
    series += [layout.dictionaries.of(key) for key in (*KEYS, "lead_key")]
    return sum(series_bytes(column) for column in series) + layout.details.nbytes()

"""How a snapshot is laid out for the queries: pure Polars transforms, no I/O.

The events of an org unit are held sorted by ``occurred_at``, so any window is
one contiguous slice found by binary search; the times themselves are held
apart, in four bytes an event (:class:`kenbun_analytics.times.Times`). Texts
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
(:func:`kenbun_analytics.queries.campaign_rows`). ``K_prev_account_day`` does
the same for (K value, account of the lead), which makes "each reachable deal
once" a sum over the first event of every (value, account) pair.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import polars as pl

from kenbun_analytics.details import Details
from kenbun_analytics.times import Times

T = TypeVar("T")
R = TypeVar("R")
MONEY = pl.Decimal(38, 2)
KEYS = ("campaign", "source", "medium")
CODE = pl.UInt32()
ROW = pl.Int32()
PAIRS = tuple((key, other) for key in KEYS for other in ("lead", "account"))
"""The (UTM key, lead or account) pairs that get a previous-event column each."""
NO_PREVIOUS = 0
"""The previous-event day of an event that is the first of its pair."""


def previous_day(key: str, other: str) -> str:
    """The name of the column of the day of each event's previous (key value, other) event."""
    return f"{key}_prev_{other}_day"


DAY = 86_400_000_000
"""Microseconds in a UTC day; day numbers count them from the epoch."""

LEAD_KEY = pl.UInt128()
"""A lead's uuid as one integer (PostgreSQL sends uuids as 16 bytes): hashing
these is several times cheaper than hashing the 36-character texts."""

RAW_EVENTS = pl.Schema(
    {
        "event_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "lead_key": LEAD_KEY,
        "campaign": pl.String(),
        "source": pl.String(),
        "medium": pl.String(),
        "points": pl.Int64(),
    }
)
LEAD_FACTS = pl.Schema(
    {
        "lead_key": LEAD_KEY,
        "is_mql": pl.Boolean(),
        "account_id": pl.String(),
        "display_name": pl.String(),
        "email": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "title": pl.String(),
        "company": pl.String(),
        "score": pl.Int32(),
        "level": pl.String(),
        "account_name": pl.String(),
        "deal_stage": pl.String(),
        "deal_amount": MONEY,
    }
)
ACCOUNT_DEALS = pl.Schema(
    {
        "account_id": pl.String(),
        "deals_count": pl.Int64(),
        "pipeline_value": MONEY,
        "closed_won_value": MONEY,
    }
)
RAW_READ = pl.Schema(
    {
        **{name: dtype for name, dtype in RAW_EVENTS.items() if name != "points"},
        "score_delta": pl.String(),
    }
)
"""Events as read: the text of ``metadata ->> 'score_delta'`` where RAW_EVENTS has points."""
BASE_EVENTS = pl.Schema(
    {
        "event_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "lead": CODE,
        "campaign": CODE,
        "source": CODE,
        "medium": CODE,
        "points": pl.Int32(),
    }
)


POINTS_LIMIT = 1_000_000_000
"""An event's points whose magnitude exceeds this count 0."""
READABLE_POINTS = r"^-?[0-9]+(\.[0-9]+)?$"
"""The texts of score_delta that are read as a number (a JSON number's text always is)."""


def read_points(score_delta: pl.Series) -> pl.Series:
    """The points of each event from the text of its ``metadata ->> 'score_delta'``.

    A readable text is rounded half away from zero (``2.5`` is 3, ``-2.5`` is
    -3); a magnitude over :data:`POINTS_LIMIT`, an unreadable text and NULL
    give 0. Each distinct text is read once: events repeat a few values.
    """
    texts = score_delta.drop_nulls().unique()
    points = texts.to_frame("text").select(_points_of(pl.col("text"))).to_series()
    return score_delta.replace_strict(texts, points, default=0, return_dtype=pl.Int64).alias(
        "points"
    )


def _points_of(text: pl.Expr) -> pl.Expr:
    parts = text.str.strip_prefix("-").str.split_exact(".", 1)
    # Leading zeros go, so that the length bounds the magnitude.
    whole = parts.struct.field("field_0").str.strip_chars_start("0")
    rounds_up = parts.struct.field("field_1").str.slice(0, 1) >= "5"
    magnitude = whole.str.to_integer(strict=False).fill_null(0) + rounds_up.fill_null(
        value=False
    ).cast(pl.Int64)
    counts = (
        text.str.contains(READABLE_POINTS)
        & (whole.str.len_bytes() <= len(str(POINTS_LIMIT)))
        & (magnitude <= POINTS_LIMIT)
    )
    return (
        pl.when(~counts)
        .then(0)
        .when(text.str.starts_with("-"))
        .then(-magnitude)
        .otherwise(magnitude)
        .alias("points")
    )


@dataclass(frozen=True, slots=True)
class Dictionaries:
    """Append-only dictionaries: the code of a value is its position."""

    campaign: pl.Series
    source: pl.Series
    medium: pl.Series
    lead_key: pl.Series

    @classmethod
    def empty(cls) -> Dictionaries:
        campaign, source, medium = (pl.Series(name, [], dtype=pl.String) for name in KEYS)
        return cls(campaign, source, medium, pl.Series("lead_key", [], dtype=LEAD_KEY))

    def of(self, key: str) -> pl.Series:
        series: pl.Series = getattr(self, key)
        return series


Narrower = tuple[tuple[pl.DataType, int, int], ...]
"""Integer types with the smallest and largest value each holds, narrowest first."""


def _narrowest(
    low: int | None, high: int | None, types: Narrower, wide: pl.DataType
) -> pl.DataType:
    """The first of ``types`` holding every value in [low, high], else ``wide``
    (the first, when there is no value)."""
    for dtype, smallest, largest in types:
        if low is None or high is None or smallest <= low <= high <= largest:
            return dtype
    return wide


CODE_TYPES: Narrower = ((pl.UInt8(), 0, (1 << 8) - 1), (pl.UInt16(), 0, (1 << 16) - 1))


def code_dtype(names: int) -> pl.DataType:
    """The narrowest unsigned integer holding the codes of a dictionary of
    ``names`` values: a key with 50 sources takes a byte an event, not four."""
    return _narrowest(0, names - 1 if names else None, CODE_TYPES, CODE)


def code_dtypes(dictionaries: Dictionaries) -> pl.Schema:
    """The event column of each UTM key, as :func:`code_dtype` narrows it."""
    return pl.Schema({key: code_dtype(dictionaries.of(key).len()) for key in KEYS})


NARROW_TYPES: dict[str, Narrower] = {
    "event_id": ((pl.UInt32(), 0, (1 << 32) - 1),),
    "points": ((pl.Int8(), -(1 << 7), (1 << 7) - 1), (pl.Int16(), -(1 << 15), (1 << 15) - 1)),
}
"""The narrower integer types, narrowest first, that an event column may be
held in instead of its :data:`BASE_EVENTS` type: ids below 2**32 take 4 bytes,
and the few points an event usually carries take one."""


def narrowed(column: pl.Series) -> pl.Series:
    """``column`` (one of :data:`NARROW_TYPES`) as the narrowest type holding all its values."""
    low, high = column.min(), column.max()
    types, wide = NARROW_TYPES[column.name], BASE_EVENTS[column.name]
    return column.cast(_narrowest(low, high, types, wide))  # type: ignore[arg-type]


def uuid_key(binary: pl.Expr) -> pl.Expr:
    """16-byte uuids (as PostgreSQL sends them) as :data:`LEAD_KEY` integers."""
    return binary.bin.reinterpret(dtype=LEAD_KEY, endianness="big")


def uuid_text(keys: pl.Series) -> pl.Series:
    """The canonical text of :data:`LEAD_KEY` integers (for the few leads an answer shows)."""
    return pl.Series(
        keys.name,
        [None if key is None else str(uuid.UUID(int=key)) for key in keys.to_list()],
        dtype=pl.String,
    )


def encode(values: pl.Series, names: pl.Series) -> tuple[pl.Series, pl.Series]:
    """The codes of ``values`` in ``names``, appending values not seen yet.

    Only the dictionary entries among ``values`` are looked up, so encoding a
    few values against a large dictionary costs in proportion to the few.
    """
    distinct = values.drop_nulls().unique()
    known = names.is_in(distinct.implode()).arg_true().cast(CODE)
    found = names.gather(known)
    unseen = distinct.filter(~distinct.is_in(found.implode())).sort()
    mapping = pl.DataFrame(
        {
            "text": pl.concat([found, unseen]),
            "code": pl.concat(
                [
                    known,
                    pl.int_range(names.len(), names.len() + unseen.len(), dtype=CODE, eager=True),
                ]
            ),
        }
    )
    if values.dtype == pl.String:
        # Casting to an enum of exactly these values hashes each row once, several
        # times faster than a join: the physical enum is a position in ``mapping``.
        positions = values.cast(pl.Enum(mapping.get_column("text"))).to_physical()
        codes = mapping.get_column("code").gather(positions)
    else:
        codes = _join_codes(values, mapping)
    return codes.rename(values.name), pl.concat([names, unseen]).rename(names.name)


def _join_codes(values: pl.Series, mapping: pl.DataFrame) -> pl.Series:
    """The ``code`` of each of ``values`` in ``mapping`` (which holds every one of them).

    Nulls are joined as some key of ``mapping`` and put back afterwards: a probe
    side holding nulls measured almost three times slower to join.
    """
    missing = values.is_null()
    if not missing.any() or mapping.is_empty():
        return _joined_codes(values, mapping)
    # An expression, not a Python int: a uuid key does not fit in 64 bits.
    first = pl.lit(mapping.get_column("text")).first()
    filled = values.to_frame().select(pl.col(values.name).fill_null(first)).to_series()
    return _joined_codes(filled, mapping).set(missing, None)


def _joined_codes(values: pl.Series, mapping: pl.DataFrame) -> pl.Series:
    return (
        pl.DataFrame({"text": values})
        .join(mapping, on="text", how="left", maintain_order="left")
        .get_column("code")
    )


def encode_events(
    raw: pl.DataFrame, dictionaries: Dictionaries
) -> tuple[pl.DataFrame, Dictionaries]:
    """Raw events (texts and lead keys) to base events (codes), row for row,
    extending the dictionaries."""
    columns: dict[str, pl.Series] = {}
    names: dict[str, pl.Series] = {}
    for key in (*KEYS, "lead_key"):
        columns[key], names[key] = encode(raw.get_column(key), dictionaries.of(key))
    return base_frame(raw, columns, raw.get_column("points")), Dictionaries(**names)


def base_frame(
    events: pl.DataFrame, codes: dict[str, pl.Series], points: pl.Series
) -> pl.DataFrame:
    """Base events (:data:`BASE_EVENTS`): the ids and times of ``events``, the
    ``codes`` of their leads (``lead_key``) and UTM values, and ``points``."""
    return pl.DataFrame(
        {
            "event_id": events.get_column("event_id"),
            "occurred_at": events.get_column("occurred_at"),
            "lead": codes["lead_key"],
            **{key: codes[key] for key in KEYS},
            "points": points.cast(BASE_EVENTS["points"]),
        },
        schema=BASE_EVENTS,
    )


def merge_events(base: pl.DataFrame, changed_ids: pl.Series, current: pl.DataFrame) -> pl.DataFrame:
    """Drop the changed events and merge in their current versions, in time order.

    Both sides are sorted by time already, so this is one merge pass; events at
    the same instant may then sit in another order than a full load gives them,
    which no answer depends on. Tombstones (rows without an event id, left by
    :func:`kenbun_analytics.incremental.patch`) are dropped here.
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
    return _facts_at(lead_keys, lead_facts), Dictionaries(
        campaign=dictionaries.campaign,
        source=dictionaries.source,
        medium=dictionaries.medium,
        lead_key=lead_keys,
    )


def _facts_at(keys: pl.Series, lead_facts: pl.DataFrame) -> pl.DataFrame:
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


PACKED_BITS = 64
"""Width of the integers that pack a sort key with a row number (see :func:`_by_key`)."""


def _by_key(frame: pl.DataFrame, key: pl.Expr, bound: int) -> pl.DataFrame:
    """The rows whose ``key`` (an integer below ``bound``) is not null, as columns
    ``key`` (UInt64) and ``row`` (UInt32), ordered by key and then row.

    When key and row number fit in one 64-bit integer together, one plain sort
    of those integers orders them (about a third faster than a stable sort of
    the keys); otherwise the keys are sorted stably.
    """
    row_bits = max(frame.height.bit_length(), 1)
    if bound.bit_length() + row_bits <= PACKED_BITS:
        scale = 1 << row_bits
        row = pl.int_range(frame.height, dtype=pl.UInt64)
        packed = frame.select((key.cast(pl.UInt64) * scale + row).alias("packed"))
        return (
            packed.drop_nulls()
            .sort("packed")
            .select(
                (pl.col("packed") // scale).alias("key"),
                (pl.col("packed") % scale).cast(pl.UInt32).alias("row"),
            )
        )
    return (
        frame.select(key.cast(pl.UInt64).alias("key"))
        .with_row_index("row")
        .drop_nulls("key")
        .sort("key", maintain_order=True)
        .select("key", "row")
    )


def _code_bound(codes: pl.Series) -> int:
    """One more than the largest code (0 when there is none)."""
    largest = codes.max()
    return 0 if largest is None else int(largest) + 1  # type: ignore[arg-type]


def previous_pair_days(frame: pl.DataFrame, key: str, other: str, days: pl.Series) -> pl.Series:
    """For each row, the day (``days`` holds each row's) of the previous row with
    the same (key, other), else :data:`NO_PREVIOUS`.

    Ordered by pair and row, a row's previous pair row is the one before it: the
    days are gathered into that order, shifted, and scattered back, all in their
    own narrow type. Gathering and scattering row numbers and then times instead
    took 2.5-3.0 s for the six columns at 10M events on one thread, against 1.5 s.
    """
    others = _code_bound(frame.get_column(other))
    pair = pl.col(key).cast(pl.UInt64) * others + pl.col(other).cast(pl.UInt64)
    ordered = _by_key(frame, pair, _code_bound(frame.get_column(key)) * others)
    rows = ordered.get_column("row")
    previous = ordered.select(
        pl.when(pl.col("key") == pl.col("key").shift(1))
        .then(pl.lit(days.gather(rows)).shift(1))
        .otherwise(pl.lit(NO_PREVIOUS, dtype=days.dtype))
    ).to_series()
    result = pl.repeat(NO_PREVIOUS, frame.height, dtype=days.dtype, eager=True)
    result.scatter(rows, previous)
    return result


@dataclass(frozen=True, slots=True)
class ValueIndex:
    """The rows of each value of one UTM key: ``rows[offsets[c]:offsets[c + 1]]``
    are the ascending row indices (UInt32, 4 bytes an event) of the events whose
    code is ``c``."""

    rows: pl.Series
    offsets: pl.Series

    def rows_of(self, code: int, lo: int, hi: int) -> pl.Series:
        """The rows of ``code`` inside [lo, hi): one slice, found by binary search."""
        if code + 1 >= self.offsets.len():
            return self.rows.clear()
        start, end = int(self.offsets[code]), int(self.offsets[code + 1])
        rows = self.rows.slice(start, end - start)
        first = int(rows.search_sorted(lo, side="left"))
        last = int(rows.search_sorted(hi, side="left"))
        return rows.slice(first, last - first)


INDEXED_VALUES = 1 << 8
"""A UTM key with more values than this gets a :class:`ValueIndex`. One with
fewer has one-byte codes (:func:`code_dtype`), and scanning a window's codes
for one value costs about what gathering its rows from an index would (a few
milliseconds at 10M events), without 4 bytes an event held for it."""


def indexed(names: int) -> bool:
    """Whether a UTM key whose dictionary has ``names`` values gets a value index."""
    return names > INDEXED_VALUES


def value_index(codes: pl.Series, names: int) -> ValueIndex:
    """Index the rows of every code of ``codes`` (nulls are left out)."""
    ordered = _by_key(codes.to_frame("code"), pl.col("code"), names)
    boundaries = pl.int_range(names + 1, dtype=pl.UInt64, eager=True)
    offsets = ordered.get_column("key").search_sorted(boundaries, side="left").cast(pl.Int64)
    return ValueIndex(rows=ordered.get_column("row"), offsets=offsets)


def event_day(micros: int, first: int) -> int:
    """The UTC day of an event at ``micros`` as the previous-day columns count
    days: the day of the first event (at ``first``) is 1."""
    return micros // DAY - first // DAY + 1


DAY_TYPES: Narrower = ((pl.UInt8(), 0, (1 << 8) - 1), (pl.UInt16(), 0, (1 << 16) - 1))
"""The types of the previous-day columns, narrowest first, by the day numbers they hold."""


def previous_day_dtype(times: Times) -> pl.DataType:
    """UInt8 while the events span fewer than 256 UTC days, UInt16 while they
    span fewer than 65,536, else UInt32: the six columns take 6 bytes an event
    for events of the last eight months, 12 for those of a few years."""
    last = event_day(times.micros(-1), times.micros(0)) if len(times) else None
    return _narrowest(0, last, DAY_TYPES, pl.UInt32())


def event_days(times: pl.Series, *, first: int, dtype: pl.DataType) -> pl.Series:
    """The :func:`event_day` of the event at each of ``times``, as ``dtype``;
    ``first`` is the time of the first event."""
    return pl.select((times.to_physical() // DAY - (first // DAY - 1)).cast(dtype)).to_series()


def derive_events(base: pl.DataFrame, leads: pl.DataFrame, times: Times) -> pl.DataFrame:
    """The query frame: base events (at ``times``) plus each lead's MQL flag and
    account, and the day of each event's previous event of each pair."""
    events = with_lead_facts(base, leads)
    first = times.micros(0) if len(times) else 0
    dtype = previous_day_dtype(times)
    days = event_days(events.get_column("occurred_at"), first=first, dtype=dtype)

    def days_of(pair: tuple[str, str]) -> pl.Series:
        return previous_pair_days(events, *pair, days).alias(previous_day(*pair))

    return events.with_columns(side_by_side(days_of, PAIRS))


def side_by_side(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``function`` of each of ``items``, on as many threads as Polars has.

    Polars runs each operation on its thread pool, but a gather, a scatter or a
    conditional runs on one core; two derivations at once keep both busy. At
    10M events on two cores the six previous-day columns took 2.8-3.3 s this way,
    4.4-4.6 s one after the other; the three day totals 1.0 s, against 1.3 s.
    """
    with ThreadPoolExecutor(max_workers=pl.thread_pool_size()) as pool:
        return list(pool.map(function, items))


def with_lead_facts(base: pl.DataFrame, leads: pl.DataFrame) -> pl.DataFrame:
    """``base`` plus the MQL flag and account code of each event's lead."""
    return base.with_columns(
        pl.lit(leads.get_column("is_mql"))
        .gather(pl.col("lead"))
        .fill_null(value=False)
        .alias("is_mql"),
        account_of(leads),
    )


def account_of(leads: pl.DataFrame) -> pl.Expr:
    """The account code of each row's lead, as column ``account``.

    The layout's events hold no account: it is their lead's, so the queries
    gather it for the few rows that need it, and the derivations add it for
    their own work (:func:`with_lead_facts`). That saves 4 bytes an event.
    """
    return pl.lit(leads.get_column("account")).gather(pl.col("lead")).alias("account")


def deal_sums(pairs: pl.LazyFrame, accounts: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """Deal totals of the accounts in ``pairs`` (an ``account`` column), summed per ``by``."""
    return (
        pairs.join(accounts, on="account", how="inner")
        .group_by(by)
        .agg(
            pl.col("deals_count").sum().alias("deals_count"),
            pl.col("pipeline_value").sum().cast(MONEY).alias("pipeline_value"),
            pl.col("closed_won_value").sum().cast(MONEY).alias("closed_won_value"),
        )
    )


def day_number() -> pl.Expr:
    """The UTC day of ``occurred_at``, counted from the epoch, as column ``day``."""
    return (pl.col("occurred_at").to_physical() // DAY).cast(pl.Int32).alias("day")


def day_totals(events: pl.DataFrame, accounts: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per (UTC day, value of ``key``), sorted by day then code.

    ``new_leads``, ``new_mqls`` and the deal columns count only the first event
    ever of each (value, lead) and (value, account) pair, so they add up over
    any run of whole days that starts at the first event. The counts of events
    are :data:`ROW` integers, as row numbers are; the queries sum them as Int64.
    """
    day = day_number()
    new_lead = (pl.col(previous_day(key, "lead")) == NO_PREVIOUS) & pl.col("lead").is_not_null()
    new_account = (pl.col(previous_day(key, "account")) == NO_PREVIOUS) & pl.col(
        "account"
    ).is_not_null()
    keyed = events.lazy().filter(pl.col(key).is_not_null())
    totals = keyed.group_by(day, key).agg(
        pl.len().cast(ROW).alias("total_events"),
        pl.col("points").cast(pl.Int64).sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
        new_lead.sum().cast(ROW).alias("new_leads"),
        (new_lead & pl.col("is_mql")).sum().cast(ROW).alias("new_mqls"),
    )
    deals = deal_sums(
        keyed.filter(new_account).select(day, key, "account"), accounts.lazy(), ["day", key]
    )
    zero = pl.lit(0).cast(MONEY)
    return (
        totals.join(deals, on=["day", key], how="left")
        .with_columns(
            pl.col("deals_count").fill_null(0),
            pl.col("pipeline_value").fill_null(zero),
            pl.col("closed_won_value").fill_null(zero),
        )
        .sort("day", key)
        .collect()
    )


COUNT_TYPES: Narrower = (
    (pl.UInt8(), 0, (1 << 8) - 1),
    (pl.UInt16(), 0, (1 << 16) - 1),
    (pl.UInt32(), 0, (1 << 32) - 1),
)
SUM_TYPES: Narrower = (
    (pl.Int8(), -(1 << 7), (1 << 7) - 1),
    (pl.Int16(), -(1 << 15), (1 << 15) - 1),
    (pl.Int32(), -(1 << 31), (1 << 31) - 1),
)
DAY_NARROWING: dict[str, tuple[Narrower, pl.DataType]] = {
    "day": (((pl.UInt16(), 0, (1 << 16) - 1),), pl.Int32()),
    "total_events": (COUNT_TYPES, ROW),
    "total_points": (SUM_TYPES, pl.Int64()),
    "new_leads": (COUNT_TYPES, ROW),
    "new_mqls": (COUNT_TYPES, ROW),
    "deals_count": (COUNT_TYPES, pl.Int64()),
}
"""The day-total columns held narrower than :func:`day_totals` makes them: the
narrower types, narrowest first, and the type :func:`day_totals` makes."""
MONEY_SUMS = ("pipeline_value", "closed_won_value")
CENTS = pl.Int64()
"""Money held as its integer number of cents (8 bytes, where :data:`MONEY` takes 16)."""


def money_of_cents(cents: pl.Expr) -> pl.Expr:
    """An integer number of cents as exact :data:`MONEY`."""
    return (cents.cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"), dtype=MONEY)).cast(MONEY)


def compact_days(totals: pl.DataFrame) -> pl.DataFrame:
    """Day totals (:func:`day_totals`, or :func:`summable_days`) in the narrowest
    types holding their values: most cells hold a few events, and money as
    cents while every sum fits in 64 bits. At 10M events the campaign's day
    totals went from 5.1 to 2.9 bytes an event."""

    def narrow(name: str) -> pl.Series:
        column = totals.get_column(name)
        types, wide = DAY_NARROWING[name]
        return column.cast(_narrowest(column.min(), column.max(), types, wide))  # type: ignore[arg-type]

    def cents(name: str) -> pl.Series:
        units = totals.get_column(name).to_physical()  # cents, of MONEY or summable_days
        held = units.cast(CENTS, strict=False)  # null where a sum is past 64 bits
        if held.null_count() == units.null_count():
            return held
        return pl.select(money_of_cents(pl.lit(units))).to_series().alias(name)

    return totals.with_columns(
        *(narrow(name) for name in DAY_NARROWING), *(cents(name) for name in MONEY_SUMS)
    )


def summable_days(totals: pl.DataFrame) -> pl.DataFrame:
    """Day totals, narrow (:func:`compact_days`) or as :func:`day_totals` makes
    them, in types their sums do not outgrow: the counts as :func:`day_totals`
    makes them, money as 128-bit integer cents (a patch adds and subtracts
    them; no decimal arithmetic on every row)."""
    return totals.with_columns(
        *(pl.col(name).cast(wide) for name, (_, wide) in DAY_NARROWING.items()),
        *(pl.col(name).to_physical().cast(pl.Int128) for name in MONEY_SUMS),
    )


def code_of(names: pl.Series) -> dict[str, int]:
    """A dictionary as a mapping of value to code."""
    return {name: code for code, name in enumerate(names.to_list())}


def names_frame(names: pl.Series) -> pl.DataFrame:
    """A dictionary as a frame of (code, name)."""
    return pl.DataFrame({"code": pl.int_range(names.len(), dtype=CODE, eager=True), "name": names})


LEAD_COLUMNS = ("is_mql", "account")
"""The per-lead columns the aggregates read: the MQL flag and the account code."""


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
    keep two cores only about 85% busy. At 9M events on two cores, a load's
    whole build (:func:`kenbun_analytics.load.full_layout`) took 6.0 s this way
    (median of six, 5.7-6.8 s), against 6.4 s (5.9-7.1 s) one after the other.
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
    new_leads = _facts_at(
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
    series = [column for frame in frames for column in frame.iter_columns()]
    series += [part for index in layout.indexes.values() for part in (index.rows, index.offsets)]
    series += [layout.times.offsets, layout.times.buckets, layout.times.starts]
    series += [layout.dictionaries.of(key) for key in (*KEYS, "lead_key")]
    return sum(series_bytes(column) for column in series) + layout.details.nbytes()

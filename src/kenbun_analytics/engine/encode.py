"""A full load's reads encoded into a layout: the events straight from their Arrow
read to codes, then built (:func:`full_layout`, the full path's producer of a Layout)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from kenbun_analytics.engine.codes import (
    Dictionaries,
    base_frame,
    encode,
    uuid_key,
    uuid_text,
)
from kenbun_analytics.engine.frames import (
    ACCOUNT_DEALS,
    CODE,
    KEYS,
    LEAD_FACTS,
    LEAD_KEY,
    RAW_EVENTS,
    RAW_READ,
)
from kenbun_analytics.engine.layout import Layout, build
from kenbun_analytics.engine.points import read_points

BASE_READ = pl.Schema({name: RAW_EVENTS[name] for name in ("event_id", "occurred_at", "lead_key")})
"""The columns of an events read that :func:`base_events` takes as they are."""


def arrow_frame(table: pa.Table, schema: pl.Schema) -> pl.DataFrame:
    """The columns of ``schema`` from an Arrow result; uuids (bytes) become lead keys."""
    frame = pl.DataFrame(pl.from_arrow(table))
    return frame.select(
        uuid_key(pl.col(name))
        if dtype == LEAD_KEY and frame.schema[name] == pl.Binary
        else pl.col(name).cast(dtype)
        for name, dtype in schema.items()
    )


def counting(keys: Iterable[pl.Series]) -> pl.Series | None:
    """Which events can ever count, given their UTM keys (texts or codes): those
    with at least one key; None when all of them can."""
    mask = pl.select(pl.any_horizontal(key.is_not_null() for key in keys)).to_series()
    return None if mask.all() else mask


def raw_events_frame(table: pa.Table | None, *, with_org_unit: bool = False) -> pl.DataFrame:
    """The events that can count as :data:`RAW_EVENTS` (plus ``org_unit_id``),
    in the order read, from a read whose ``score_delta`` texts become ``points``."""
    unit = {"org_unit_id": pl.String()} if with_org_unit else {}
    schema = pl.Schema({**unit, **RAW_EVENTS})
    if table is None:
        return pl.DataFrame(schema=schema)
    frame = arrow_frame(table, pl.Schema({**unit, **RAW_READ}))
    mask = counting(frame.get_column(key) for key in KEYS)
    if mask is not None:
        frame = frame.filter(mask)
    return frame.with_columns(read_points(frame.get_column("score_delta"))).select(schema.names())


def positions(column: pa.ChunkedArray) -> tuple[pl.Series, pl.Series]:
    """Each row's position (null for null) among the distinct values of
    ``column``, and those values, in the order first read.

    Arrow encodes the chunks of a chunked array against one dictionary that they
    all share (a read arrives in dozens of chunks; the tests read several).
    """
    encoded = pc.dictionary_encode(column)
    values = encoded.chunks[0].dictionary if encoded.num_chunks else pa.array([], column.type)
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], pa.int32())
    return pl.Series(indices).cast(CODE), pl.Series(values)


def base_events(table: pa.Table) -> tuple[pl.DataFrame, Dictionaries]:
    """The events of a full load that can count, as base events (:data:`BASE_EVENTS`)
    in the order read, and their dictionaries.

    The same as ``encode_events(raw_events_frame(table), Dictionaries.empty())``,
    but each text column (the UTM keys and ``score_delta``) is hashed once, by
    Arrow, straight from the read, each on a thread of its own, and only its
    distinct values become Polars texts (converting every text to Polars and
    encoding it there is several times slower; a property test holds the two
    alike).
    """
    texts = (*KEYS, "score_delta")
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        found = dict(zip(texts, pool.map(lambda name: positions(table[name]), texts), strict=True))
    rest = arrow_frame(table.select(["event_id", "occurred_at", "lead_key"]), BASE_READ)
    mask = counting(found[key][0] for key in KEYS)
    if mask is not None:
        found = {name: (rows.filter(mask), values) for name, (rows, values) in found.items()}
        rest = rest.filter(mask)
    empty = Dictionaries.empty()
    columns: dict[str, pl.Series] = {}
    names: dict[str, pl.Series] = {}
    for key in KEYS:
        rows, values = found[key]
        codes, names[key] = encode(values.rename(key), empty.of(key))
        columns[key] = codes.gather(rows)
    columns["lead_key"], names["lead_key"] = encode(rest.get_column("lead_key"), empty.lead_key)
    rows, values = found["score_delta"]
    points = read_points(values).gather(rows).fill_null(0)
    return base_frame(rest, columns, points), Dictionaries(**names)


LeadsById = Callable[[list[str]], pa.Table]
"""Reads the facts of leads by id (:meth:`Source.leads_by_id`)."""


def full_layout(
    events: pa.Table,
    leads: pa.Table,
    account_deals: pa.Table,
    leads_by_id: LeadsById | None = None,
) -> Layout:
    """The layout of an org unit from scratch; with ``leads_by_id``, the leads of
    other org units that its events name get their facts too."""
    base, dictionaries = base_events(events)
    # Sorted once encoded: moving integers is cheaper than moving texts.
    base = base.sort("occurred_at", "event_id")
    lead_facts = arrow_frame(leads, LEAD_FACTS)
    if leads_by_id is not None:
        lead_facts = pl.concat(
            [
                lead_facts,
                missing_leads(
                    dictionaries.lead_key, lead_facts.get_column("lead_key"), leads_by_id
                ),
            ]
        )
    return build(base, dictionaries, lead_facts, arrow_frame(account_deals, ACCOUNT_DEALS))


def missing_leads(keys: pl.Series, known: pl.Series, leads_by_id: LeadsById) -> pl.DataFrame:
    """The facts (LEAD_FACTS) of the leads among ``keys`` whose key is not
    ``known``: leads of another org unit, read by id (none read when none is missing)."""
    missing = keys.drop_nulls().unique()
    # Probing the known keys with the (usually few) missing ones hashes only those.
    found = known.filter(known.is_in(missing.implode()))
    missing = missing.filter(~missing.is_in(found.implode()))
    if not missing.len():
        return pl.DataFrame(schema=LEAD_FACTS)
    return arrow_frame(leads_by_id(uuid_text(missing).to_list()), LEAD_FACTS)

"""A full load: an org unit read from PostgreSQL (events, per-lead facts and
per-account deal totals, side by side) and built into its layout, the same in
the server or in a child."""

from __future__ import annotations

from concurrent.futures import Executor

import pyarrow as pa

from kenbun_analytics.engine.encode import full_layout
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.source.postgres import Source

Reads = tuple[pa.Table, pa.Table, pa.Table]
"""An org unit's events, per-lead facts and deal totals, as :func:`read_unit` gives them."""


def read_unit(source: Source, unit: str, parts: int, readers: Executor) -> Reads:
    """An org unit's events, per-lead facts and deal totals, read side by side
    by ``readers``: the events in ``parts`` parts, the facts on one more connection."""
    facts = readers.submit(lambda: (source.leads_of(unit), source.account_deals_of(unit)))
    events = [
        readers.submit(source.events_of, unit, part=part, parts=parts) for part in range(parts)
    ]
    try:
        tables = [part.result() for part in events]
    finally:
        leads, account_deals = facts.result()
    return pa.concat_tables(tables), leads, account_deals


def load_unit(source: Source, unit: str, parts: int, readers: Executor) -> Layout:
    """The layout of ``unit`` as PostgreSQL has it now."""
    return full_layout(*read_unit(source, unit, parts, readers), source.leads_by_id)

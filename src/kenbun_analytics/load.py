"""Full loads: an org unit read from PostgreSQL and built into its layout.

A full load of a large org unit is tens of CPU-seconds of decoding, encoding
and sorting, and several times the snapshot's size in transient memory. In the
serving process that work would share Polars' thread pool with the requests (a
query waits behind the load's sorts) and leave the allocator holding the
transient memory. So the service runs the loads of a full refresh in a child
process (:class:`ChildLoads`):

* the child runs :data:`~kenbun_analytics.priority.LOAD_NICENESS` below the
  server's CPU priority, so the requests take the cores first, and so do the
  PostgreSQL server processes it reads from, where we may lower them
  (:mod:`kenbun_analytics.priority`);
* it is forked from a fork server that has imported this module already, so it
  is ready in tens of milliseconds rather than after a second of imports (as
  with any multiprocessing, the child imports the server's main module again:
  it must be guarded by ``if __name__ == "__main__":``, as ours are);
* while it builds an org unit, it reads the next one the refresh loads (a read
  is mostly PostgreSQL's work and the driver's decoding, and takes the core that
  the build's single-threaded steps leave idle), then builds that one without
  waiting for the server to take the layout before;
* each finished layout crosses as uncompressed Arrow IPC files in a temporary
  directory, read back into the server's own memory (about 0.2 s a GB);
* the child exits when the refresh is done, and all of its memory goes with it.

:func:`read_unit` and :func:`full_layout` are the load itself, the same in either
process (:func:`load_unit` runs them one after the other).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import signal
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from kenbun_analytics.details import Details
from kenbun_analytics.errors import LoadError, SourceError
from kenbun_analytics.layout import (
    ACCOUNT_DEALS,
    CODE,
    KEYS,
    LEAD_FACTS,
    LEAD_KEY,
    RAW_EVENTS,
    RAW_READ,
    Dictionaries,
    Layout,
    ValueIndex,
    base_frame,
    build,
    code_of,
    encode,
    read_points,
    uuid_key,
    uuid_text,
)
from kenbun_analytics.priority import LOAD_NICENESS, lower_thread
from kenbun_analytics.source.postgres import Source, SourceOptions
from kenbun_analytics.times import Times

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
    distinct values become Polars texts: at 9 million events 1.5-1.7 s against
    3.7-4.8 s.
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


# --------------------------------------------------------- the layout as files --


def _frames(layout: Layout) -> dict[str, pl.DataFrame]:
    frames = {"events": layout.events, "leads": layout.leads, "accounts": layout.accounts}
    frames["times"] = layout.times.offsets.to_frame()
    frames["buckets"] = pl.DataFrame([layout.times.buckets, layout.times.starts])
    for key in (*KEYS, "lead_key"):
        frames[f"dictionary.{key}"] = layout.dictionaries.of(key).to_frame()
    for key, index in layout.indexes.items():
        frames[f"rows.{key}"] = index.rows.to_frame()
        frames[f"offsets.{key}"] = index.offsets.to_frame()
    for key, days in layout.days.items():
        frames[f"days.{key}"] = days
    return frames


def write_layout(layout: Layout, directory: Path) -> None:
    """``layout`` as Arrow IPC files in ``directory``, with the columns known sorted."""
    sorted_columns = {}
    for name, frame in _frames(layout).items():
        frame.write_ipc(directory / f"{name}.arrow", compression="uncompressed")
        sorted_columns[name] = [
            column.name for column in frame.iter_columns() if column.flags["SORTED_ASC"]
        ]
    (directory / "sorted.json").write_text(json.dumps(sorted_columns))
    # A stream, not a file: each chunk of an appended column may have a dictionary of its own.
    details = layout.details.table
    with pa.ipc.new_stream(str(directory / "details.arrow"), details.schema) as writer:
        writer.write_table(details)


def read_layout(directory: Path) -> Layout:
    """The layout that :func:`write_layout` wrote, in this process's own memory."""
    sorted_columns: dict[str, list[str]] = json.loads((directory / "sorted.json").read_text())

    def frame(name: str) -> pl.DataFrame:
        # Read through a file object: given a path, Polars would map the file.
        with (directory / f"{name}.arrow").open("rb") as file:
            read = pl.read_ipc(file)
        return read.with_columns(pl.col(column).set_sorted() for column in sorted_columns[name])

    dictionaries = Dictionaries(
        **{key: frame(f"dictionary.{key}").to_series() for key in (*KEYS, "lead_key")}
    )
    with (directory / "details.arrow").open("rb") as file:
        details = Details(pa.ipc.open_stream(file).read_all())
    buckets = frame("buckets")
    return Layout(
        events=frame("events"),
        times=Times(
            offsets=frame("times").to_series(),
            buckets=buckets.get_column("bucket"),
            starts=buckets.get_column("start"),
        ),
        leads=frame("leads"),
        details=details,
        accounts=frame("accounts"),
        dictionaries=dictionaries,
        indexes={
            key: ValueIndex(
                rows=frame(f"rows.{key}").to_series(), offsets=frame(f"offsets.{key}").to_series()
            )
            for key in KEYS
            if (directory / f"rows.{key}.arrow").exists()
        },
        days={key: frame(f"days.{key}") for key in KEYS},
        codes={key: code_of(dictionaries.of(key)) for key in KEYS},
    )


# ------------------------------------------------------------ the child process --


def _child_started() -> None:
    """The child's setup: a lower CPU priority before any thread starts; SIGINT
    left to the server, which stops the child by shutting its pool down."""
    lower_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Reader:
    """The child's connections and reader threads, kept from one load of a refresh
    to the next so that the next org unit can be read while this one builds."""

    def __init__(self, source: Source, parts: int) -> None:
        self.source = source
        self._parts = parts
        self._readers = ThreadPoolExecutor(max_workers=parts + 1, thread_name_prefix="kenbun-read")
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kenbun-read-ahead")
        self._pending: tuple[str, Future[Reads]] | None = None

    def read(self, unit: str) -> Reads:
        """``unit``'s reads: the ones read ahead for it, else read now."""
        pending, self._pending = self._pending, None
        if pending is not None:
            ahead, reads = pending
            if ahead == unit:
                return reads.result()
            with contextlib.suppress(SourceError):  # read for nothing: not asked for
                reads.result()
        return read_unit(self.source, unit, self._parts, self._readers)

    def read_ahead(self, unit: str) -> None:
        """Start reading ``unit`` while this process builds the one it has read."""
        self._pending = (
            unit,
            self._ahead.submit(read_unit, self.source, unit, self._parts, self._readers),
        )

    def close(self) -> None:
        self._pending = None
        self._ahead.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.source.close()


_reader: _Reader | None = None
"""In the child process only: its reader, open while a refresh has loads to come."""


def _load_in_child(
    options: SourceOptions, unit: str, parts: int, directory: str, then: str | None
) -> None:
    """Load ``unit`` into ``directory``; with ``then``, the org unit the server asks
    for next, which is read while this one builds. The last load closes the reader."""
    global _reader  # noqa: PLW0603 - the child's one reader, across the refresh's loads
    if _reader is None:
        # The server processes of the child's connections are lowered too, where they
        # run on this machine under our OS user: their reading is the load's work.
        # One connection more than a read takes: the build reads missing leads by id
        # while the next org unit's read holds the others.
        lowered = dataclasses.replace(
            options, backend_niceness=LOAD_NICENESS, connections=max(options.connections, parts + 2)
        )
        _reader = _Reader(Source.opened_with(lowered), parts)
    reader = _reader
    try:
        reads = reader.read(unit)
        if then is not None:
            reader.read_ahead(then)
        layout = full_layout(*reads, reader.source.leads_by_id)
    finally:
        if then is None:
            _reader = None
            reader.close()
    write_layout(layout, Path(directory))


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The allocator's settings first: they must be in place before Polars is imported.
    context.set_forkserver_preload(["kenbun_analytics.child_allocator", __name__])
    return context


_Queued = tuple[Future[None], tempfile.TemporaryDirectory[str]]
"""A load submitted to the child, and the directory its layout arrives in."""


class ChildLoads:
    """The full loads of one refresh, in one child process started at the first
    load and stopped on leaving the ``with`` block."""

    def __init__(self, options: SourceOptions, parts: int) -> None:
        self._options = options
        self._parts = parts
        self._pool: ProcessPoolExecutor | None = None
        self._queued: dict[str, _Queued] = {}
        """Loads submitted ahead of the call that takes them."""

    def __enter__(self) -> ChildLoads:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for _, directory in self._queued.values():
            directory.cleanup()
        self._queued.clear()

    def load(self, unit: str, after: Sequence[str] = ()) -> Layout:
        """The layout of ``unit``, built in the child; :class:`SourceError` as the
        child raised it, :class:`LoadError` when the child died.

        ``after`` are the org units this refresh loads after ``unit``, in the order
        of the next calls. The child reads the first of them while it builds
        ``unit``, on cores that the build leaves idle, and builds it next without
        waiting for this process to take ``unit``'s layout; the last load (nothing
        after it) closes the child's connections.
        """
        queued = self._queued.pop(unit, None) or self._submit(unit, _first(after))
        if after and after[0] not in self._queued:
            self._queued[after[0]] = self._submit(after[0], _first(after[1:]))
        future, directory = queued
        with directory:
            try:
                future.result()
            except BrokenProcessPool:
                self._stop()  # the next load starts a new child
                raise LoadError(unit) from None
            return read_layout(Path(directory.name))

    def _submit(self, unit: str, then: str | None) -> _Queued:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=_context(), initializer=_child_started
            )
        directory = tempfile.TemporaryDirectory(prefix="kenbun-load-")
        future = self._pool.submit(
            _load_in_child,
            self._options,
            unit,
            self._parts,
            directory.name,
            then,
        )
        return future, directory


def _first(units: Sequence[str]) -> str | None:
    return units[0] if units else None

"""Full loads: an org unit read from PostgreSQL and built into its layout.

A full load of a large org unit is tens of CPU-seconds of decoding, encoding
and sorting, and several times the snapshot's size in transient memory. In the
serving process that work would share Polars' thread pool with the requests (a
query waits behind the load's sorts) and leave the allocator holding the
transient memory. So the service runs the loads of a full refresh in a child
process (:class:`ChildLoads`):

* the child runs :data:`~kenbun_analytics.source.priority.LOAD_NICENESS` below the
  server's CPU priority, so the requests take the cores first, and so do the
  PostgreSQL server processes it reads from, where we may lower them
  (:mod:`kenbun_analytics.source.priority`);
* it is forked from a fork server that has imported this module already, so it
  is ready in tens of milliseconds rather than after a second of imports (as
  with any multiprocessing, the child imports the server's main module again:
  it must be guarded by ``if __name__ == "__main__":``, as ours are);
* while it builds an org unit, it reads the next one the refresh loads (a read
  is mostly PostgreSQL's work and the driver's decoding, and takes the core that
  the build's single-threaded steps leave idle), then builds that one without
  waiting for the server to take the layout before;
* each finished layout crosses as uncompressed Arrow IPC files in a temporary
  directory, read back into the server's own memory;
* the child exits when the refresh is done, and all of its memory goes with it.

:func:`read_unit` and :func:`full_layout` are the load itself, the same in either
process (:func:`load_unit` runs them one after the other).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import signal
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType

from kenbun_analytics.engine.encode import full_layout
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.errors import LoadError, SourceError
from kenbun_analytics.refresh.full import Reads, read_unit
from kenbun_analytics.refresh.handover import read_layout, write_layout
from kenbun_analytics.source.postgres import Source, SourceOptions
from kenbun_analytics.source.priority import LOAD_NICENESS, lower_thread


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
    options: SourceOptions,
    unit: str,
    parts: int,
    directory: str,
    then: str | None,
    *,
    whole: bool = False,
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
    write_layout(layout, Path(directory), whole=whole)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The allocator's settings first: they must be in place before Polars is imported.
    context.set_forkserver_preload(["kenbun_analytics.refresh.child_allocator", __name__])
    return context


_Queued = tuple[Future[None], tempfile.TemporaryDirectory[str]]
"""A load submitted to the child, and the directory its layout arrives in."""


class ChildLoads:
    """The full loads of one refresh, in one child process started at the first
    load and stopped on leaving the ``with`` block."""

    def __init__(self, options: SourceOptions, parts: int, *, mapped: bool = False) -> None:
        self._options = options
        self._parts = parts
        self._mapped = mapped
        """Map each layout from the files the child wrote rather than reading it into
        this process's heap: for a refresher that publishes it, and then serves the
        published version, the layout never needs to be in its heap at all."""
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
            # Mapped files stay readable once the directory is removed on leaving.
            return read_layout(Path(directory.name), mapped=self._mapped)

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
            whole=self._mapped,
        )
        return future, directory


def _first(units: Sequence[str]) -> str | None:
    return units[0] if units else None

"""Layouts as uncompressed Arrow IPC files: how a child hands a finished layout to
the server, and how a published version is written and memory-mapped
(:mod:`kenbun_analytics.refresh.published`).

Written ``whole``, each frame is one record batch of whole columns, so that a
reader that maps the file gets single-chunk columns pointing into the mapping
(Polars' own writer splits a frame into many batches, and a column of many
chunks is slower to search and slice). Arrow has no 128-bit integer, so a
``UInt128`` column (lead keys) is written as two ``UInt64`` halves and joined
again on reading: the one column of a mapped layout held in the heap.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa

from kenbun_analytics.engine.codes import (
    Dictionaries,
    code_of,
)
from kenbun_analytics.engine.details import Details
from kenbun_analytics.engine.frames import (
    KEYS,
)
from kenbun_analytics.engine.index import ValueIndex
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.engine.times import Times


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


_HALF = 1 << 64
_HIGH, _LOW = ":high", ":low"


def _split_wide(frame: pl.DataFrame) -> pl.DataFrame:
    """Each UInt128 column as its two UInt64 halves, in its place."""
    columns: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if dtype == pl.UInt128:
            columns.append((pl.col(name) // _HALF).cast(pl.UInt64).alias(name + _HIGH))
            columns.append((pl.col(name) % _HALF).cast(pl.UInt64).alias(name + _LOW))
        else:
            columns.append(pl.col(name))
    return frame.select(columns)


def _join_wide(frame: pl.DataFrame) -> pl.DataFrame:
    """The inverse of :func:`_split_wide`."""
    columns: list[pl.Expr] = []
    for name in frame.columns:
        if name.endswith(_HIGH):
            wide = name.removesuffix(_HIGH)
            columns.append(
                (
                    pl.col(name).cast(pl.UInt128) * _HALF + pl.col(wide + _LOW).cast(pl.UInt128)
                ).alias(wide)
            )
        elif not name.endswith(_LOW):
            columns.append(pl.col(name))
    return frame.select(columns)


def write_layout(layout: Layout, directory: Path, *, whole: bool = False) -> list[Path]:
    """``layout`` as Arrow IPC files in ``directory``, with the columns known sorted;
    the files written. ``whole``: one record batch of whole columns per frame."""
    sorted_columns = {}
    written = []
    for name, frame in _frames(layout).items():
        path = directory / f"{name}.arrow"
        written.append(path)
        if whole:
            table = _split_wide(frame).to_arrow().combine_chunks()
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        else:
            frame.write_ipc(path, compression="uncompressed")
        sorted_columns[name] = [
            column.name for column in frame.iter_columns() if column.flags["SORTED_ASC"]
        ]
    (directory / "sorted.json").write_text(json.dumps(sorted_columns))
    written.append(directory / "sorted.json")
    # A stream, not a file: each chunk of an appended column may have a dictionary of its own.
    details = layout.details.table
    with pa.ipc.new_stream(str(directory / "details.arrow"), details.schema) as writer:
        writer.write_table(details)
    written.append(directory / "details.arrow")
    return written


def read_layout(directory: Path, *, mapped: bool = False) -> Layout:
    """The layout that :func:`write_layout` wrote: in this process's own memory, or
    ``mapped``, its columns pointing into the files' pages (shared with every
    process that maps them, and readable after the files are unlinked)."""
    sorted_columns: dict[str, list[str]] = json.loads((directory / "sorted.json").read_text())

    def frame(name: str) -> pl.DataFrame:
        path = directory / f"{name}.arrow"
        if mapped:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            read = _join_wide(pl.DataFrame(pl.from_arrow(table, rechunk=False)))
        else:
            # Read through a file object: given a path, Polars would map the file.
            with path.open("rb") as file:
                read = pl.read_ipc(file)
        return read.with_columns(pl.col(column).set_sorted() for column in sorted_columns[name])

    dictionaries = Dictionaries(
        **{key: frame(f"dictionary.{key}").to_series() for key in (*KEYS, "lead_key")}
    )
    if mapped:
        stream = pa.ipc.open_stream(pa.memory_map(str(directory / "details.arrow")))
        details = Details(stream.read_all())
    else:
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

"""Layouts as uncompressed Arrow IPC files: how a child hands a finished layout to the server."""

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

"""CSV and Arrow answers, built from the frames the JSON answers are built from.

- CSV (RFC 4180): UTF-8 without a byte-order mark, CRLF line ends, a header
  row of the JSON's field names in its order, then one line per JSON row.
  Each cell is the JSON's text of the value: money as the shortest exact
  decimal (``485000``, ``1234.5``), timestamps RFC 3339 UTC with ``Z``, texts
  as they are (quoted when they hold a comma, a quote, CR or LF, or are
  empty, so that an empty text differs from a NULL, which is an empty field).
  Nothing is altered for spreadsheets.
- Arrow: one IPC stream, every integer ``int64``, money ``decimal128(38, 2)``,
  timestamps ``timestamp[us, tz=UTC]``, texts ``string``.

Both are column-wise, like :mod:`kenbun_analytics.engine.wire`.
"""

from __future__ import annotations

import functools
import io

import polars as pl
import pyarrow as pa

MONEY_ARROW = pa.decimal128(38, 2)
TIME_ARROW = pa.timestamp("us", tz="UTC")
_NEEDS_QUOTES = r'[,"\r\n]'


def money_text(column: pl.Expr, dtype: pl.Decimal) -> pl.Expr:
    """The JSON's text of a decimal: shortest exact form (``485000``, ``1234.5``)."""
    text = column.cast(pl.String)
    if dtype.scale:
        text = text.str.strip_chars_end("0").str.strip_suffix(".")
    return text


def time_text(column: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    """The JSON's text of an instant: RFC 3339 UTC with ``Z``, microseconds when present."""
    utc = column if dtype.time_zone == "UTC" else column.dt.convert_time_zone("UTC")
    text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f").str.strip_suffix(".000000")
    return pl.concat_str(text, pl.lit("Z"))


def _csv_cell(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.String:
        escaped = column.str.replace_all('"', '""', literal=True)
        quoted = pl.concat_str(pl.lit('"'), escaped, pl.lit('"'))
        text = (
            pl.when(column.str.contains(_NEEDS_QUOTES) | (column == ""))
            .then(quoted)
            .otherwise(column)
        )
    elif isinstance(dtype, pl.Decimal):
        text = money_text(column, dtype)
    elif isinstance(dtype, pl.Datetime):
        text = time_text(column, dtype)
    else:
        text = column.cast(pl.String)
    return text.fill_null("")


def _csv_header(name: str) -> str:
    if any(char in name for char in ',"\r\n'):
        return '"' + name.replace('"', '""') + '"'
    return name


def csv_text(frame: pl.DataFrame) -> bytes:
    """The CSV of ``frame``: a header row of its column names, then its rows."""
    header = ",".join(_csv_header(name) for name in frame.columns) + "\r\n"
    if frame.height == 0:
        return header.encode()
    # The whole text in one piece: an answer of thousands of rows is not copied once a part.
    text = pl.concat_str(
        pl.lit(header), _csv_lines(tuple(frame.schema.items())), pl.lit("\r\n")
    ).cast(pl.Binary)
    body: bytes = frame.select(text).item()
    return body


@functools.lru_cache(maxsize=64)
def _csv_lines(schema: tuple[tuple[str, pl.DataType], ...]) -> pl.Expr:
    """The lines of a frame of ``schema``, kept per schema as
    :mod:`kenbun_analytics.engine.wire` keeps its expressions."""
    cells = [_csv_cell(name, dtype) for name, dtype in schema]
    return pl.concat_str(cells, separator=",").str.join("\r\n")


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    if isinstance(dtype, pl.Decimal):
        return MONEY_ARROW
    if isinstance(dtype, pl.Datetime):
        return TIME_ARROW
    if dtype.is_integer():
        return pa.int64()
    if dtype == pl.Boolean:
        return pa.bool_()
    return pa.string()


def arrow_stream(frame: pl.DataFrame) -> bytes:
    """One Arrow IPC stream of ``frame``: the types of the module's list."""
    schema = pa.schema([(name, _arrow_type(dtype)) for name, dtype in frame.schema.items()])
    # One record batch, whatever chunks the query left: the same rows give the same bytes.
    table = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest()).cast(schema)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue()

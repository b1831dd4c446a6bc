"""JSON text of result rows, built column-wise in Polars.

Turning thousands of rows of Decimals and aware datetimes into Python objects
costs far more than the query that produced them, so each column becomes
JSON text in one vectorised step and the rows are joined into one array,
which the msgspec envelope embeds as ``msgspec.Raw``. The spellings match the
documented ones: strings escaped as JSON, money as the shortest exact number
(``485000``, ``1234.5``), timestamps as RFC 3339 UTC with ``Z`` and
microseconds only when present.
"""

from __future__ import annotations

import functools

import polars as pl


def _json_text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.String:
        encoded = pl.struct(column.alias("v")).struct.json_encode()  # {"v":<json>}
        return encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
    if isinstance(dtype, pl.Decimal):
        text = column.cast(pl.String)
        if dtype.scale:  # always "<digits>.<scale digits>": trailing zeros, then the point
            text = text.str.strip_chars_end("0").str.strip_suffix(".")
        return text.fill_null("null")
    if isinstance(dtype, pl.Datetime):
        utc = column if dtype.time_zone == "UTC" else column.dt.convert_time_zone("UTC")
        # One formatting pass; whole seconds then lose their ".000000".
        text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f").str.strip_suffix(".000000")
        return pl.concat_str(pl.lit('"'), text, pl.lit('Z"')).fill_null("null")
    return column.cast(pl.String).fill_null("null")


@functools.lru_cache(maxsize=64)
def _objects(schema: tuple[tuple[str, pl.DataType], ...]) -> pl.Expr:
    """The rows of a frame of ``schema`` as JSON objects joined by commas.

    Kept per schema: the answers have a few shapes, and building the
    expression again would be a fixed cost of every answer, however small.
    """
    pieces: list[pl.Expr] = []
    for index, (name, dtype) in enumerate(schema):
        pieces.append(pl.lit(("{" if index == 0 else ",") + f'"{name}":'))
        pieces.append(_json_text(name, dtype))
    pieces.append(pl.lit("}"))
    return pl.concat_str(pieces).str.join(",")


def json_array(frame: pl.DataFrame, *, between: tuple[bytes, bytes] = (b"", b"")) -> bytes:
    """The rows of ``frame`` as a JSON array of objects, keys in column order,
    between the two texts of ``between`` (an envelope's JSON before and after
    the array), in one piece: an answer of thousands of rows is not copied
    once for each of its parts."""
    before, after = between
    if frame.height == 0:
        return before + b"[]" + after
    array = pl.concat_str(
        pl.lit(before.decode() + "["),
        _objects(tuple(frame.schema.items())),
        pl.lit("]" + after.decode()),
    )
    body: bytes = frame.select(array.cast(pl.Binary)).item()
    return body

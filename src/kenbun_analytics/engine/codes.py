"""Append-only dictionaries: UTM values and lead keys as dense integer codes, each
column as narrow as its codes allow."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import polars as pl

from kenbun_analytics.engine.frames import BASE_EVENTS, CODE, KEYS, LEAD_KEY, Narrower, narrowest


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


CODE_TYPES: Narrower = ((pl.UInt8(), 0, (1 << 8) - 1), (pl.UInt16(), 0, (1 << 16) - 1))


def code_dtype(names: int) -> pl.DataType:
    """The narrowest unsigned integer holding the codes of a dictionary of
    ``names`` values: a key with 50 sources takes a byte an event, not four."""
    return narrowest(0, names - 1 if names else None, CODE_TYPES, CODE)


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
    return column.cast(narrowest(low, high, types, wide))  # type: ignore[arg-type]


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


def code_of(names: pl.Series) -> dict[str, int]:
    """A dictionary as a mapping of value to code."""
    return {name: code for code, name in enumerate(names.to_list())}


def names_frame(names: pl.Series) -> pl.DataFrame:
    """A dictionary as a frame of (code, name)."""
    return pl.DataFrame({"code": pl.int_range(names.len(), dtype=CODE, eager=True), "name": names})

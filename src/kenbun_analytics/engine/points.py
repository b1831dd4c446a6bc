"""An event's points, read from the text of ``metadata ->> 'score_delta'``."""

from __future__ import annotations

import polars as pl

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

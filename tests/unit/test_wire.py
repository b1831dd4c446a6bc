"""Column-wise JSON encoding of result rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenbun_analytics.engine.wire import json_array

MONEY = st.decimals(
    min_value=Decimal("-9999999999999999.99"), max_value=Decimal("9999999999999999.99"), places=2
)
# Hypothesis takes naive bounds and attaches the time zone itself.
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(
    st.lists(
        st.tuples(
            st.none() | st.text(),
            st.none() | MONEY,
            st.none() | INSTANTS,
            st.integers(-(2**62), 2**62),
        )
    )
)
def test_rows_round_trip_through_json(
    rows: list[tuple[str | None, Decimal | None, datetime | None, int]],
) -> None:
    """Any text, amount, instant and integer decodes back to itself."""
    frame = pl.DataFrame(
        rows,
        schema={
            "name": pl.String,
            "amount": pl.Decimal(38, 2),
            "at": pl.Datetime("us", "UTC"),
            "n": pl.Int64,
        },
        orient="row",
    )
    decoded = json.loads(json_array(frame), parse_float=Decimal)
    assert decoded == [
        {"name": name, "amount": amount, "at": rfc3339(at), "n": n} for name, amount, at, n in rows
    ]


def rfc3339(at: datetime | None) -> str | None:
    if at is None:
        return None
    fraction = f".{at.microsecond:06d}" if at.microsecond else ""
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def test_money_has_its_shortest_exact_spelling() -> None:
    """485000.00 is 485000, 1234.50 is 1234.5, 0.00 is 0."""
    frame = pl.DataFrame({"m": ["485000.00", "1234.50", "0.00", "-0.05", "10.01"]}).select(
        pl.col("m").str.to_decimal(scale=2)
    )
    assert json_array(frame) == b'[{"m":485000},{"m":1234.5},{"m":0},{"m":-0.05},{"m":10.01}]'


def test_empty_frame_is_an_empty_array() -> None:
    assert json_array(pl.DataFrame(schema={"a": pl.String})) == b"[]"


@pytest.mark.parametrize("rows", [[], ["x"], ["é", "a\\b", '"']])
def test_an_array_between_two_texts_is_those_texts_around_it(rows: list[str]) -> None:
    """The envelope's texts, even non-ASCII ones, go around the array as they are."""
    frame = pl.DataFrame({"a": rows}, schema={"a": pl.String})
    between = ('{"name":"Zoë","rows":'.encode(), b"}")
    assert json_array(frame, between=between) == between[0] + json_array(frame) + between[1]

"""The drilldown's per-lead details give back exactly the facts they were made
of, in every encoding they pick, through appends and through the files a load
writes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine.details import COLUMNS, Details
from kenbun_analytics.engine.frames import LEAD_FACTS, MONEY
from kenbun_analytics.engine.layout import series_bytes
from kenbun_analytics.refresh.handover import read_layout, write_layout
from tests.unit.test_queries import built_from, raw_events

SCHEMA = pl.Schema({name: LEAD_FACTS[name] for name in COLUMNS})


def texts(*, few: bool) -> st.SearchStrategy[str | None]:
    """Texts that repeat (``few``) or hardly do, NULL among them; short ones fit
    a Polars view, long ones do not."""
    if few:
        return st.none() | st.sampled_from(["Hot", "VP Sales", "a-rather-long-company-name Inc"])
    return st.none() | st.text(alphabet="abcxyz@.-é", min_size=0, max_size=30)


@st.composite
def lead_facts(draw: st.DrawFn, *, max_size: int = 60) -> pl.DataFrame:
    """Facts as the source spells them: the display name is the email when there
    is one, else another alias or NULL."""
    rows = []
    for _ in range(draw(st.integers(0, max_size))):
        row: dict[str, object] = {name: draw(texts(few=draw(st.booleans()))) for name in COLUMNS}
        row["display_name"] = row["email"] if row["email"] is not None else row["display_name"]
        row["score"] = draw(st.none() | st.integers(-(2**31), 2**31 - 1))
        row["deal_amount"] = draw(
            st.none() | st.decimals(-(10**6), 10**6, places=2, allow_nan=False).map(Decimal)
        )
        rows.append(row)
    return pl.DataFrame(rows, schema=SCHEMA)


@settings(max_examples=150, deadline=None)
@given(facts=lead_facts(), data=st.data())
def test_details_give_back_the_facts_of_any_leads(facts: pl.DataFrame, data: st.DataObject) -> None:
    details = Details.of(facts)
    assert details.height == facts.height
    assert details.frame().equals(facts)
    codes = data.draw(st.lists(st.integers(0, max(facts.height - 1, 0)), max_size=20))
    codes = codes if facts.height else []
    picked = pl.Series("lead", codes, dtype=pl.UInt32)
    assert details.take(picked).equals(facts[codes] if codes else facts.clear())


@settings(max_examples=100, deadline=None)
@given(first=lead_facts(), then=st.lists(lead_facts(max_size=30), max_size=3))
def test_appended_details_are_the_details_of_all_the_facts(
    first: pl.DataFrame, then: list[pl.DataFrame]
) -> None:
    details = Details.of(first)
    for facts in then:
        details = details.appended(facts)
    assert details.frame().equals(pl.concat([first, *then]))


def test_an_appended_chunk_that_outgrows_an_index_encodes_all_again() -> None:
    """A column of two titles gets one-byte indices; 300 new titles do not fit
    them, so the details are encoded again as a whole."""
    blank = dict.fromkeys(COLUMNS)
    first = pl.DataFrame([{**blank, "title": f"t{i % 2}"} for i in range(10)], schema=SCHEMA)
    then = pl.DataFrame([{**blank, "title": f"new {i}"} for i in range(300)], schema=SCHEMA)
    details = Details.of(first)
    assert details.table.schema.field("title").type.index_type == pa.int8()
    appended = details.appended(then)
    title = appended.table.schema.field("title").type
    assert not pa.types.is_dictionary(title) or title.index_type != pa.int8()
    assert appended.frame().equals(pl.concat([first, then]))


def test_details_are_smaller_than_the_polars_columns_they_replace() -> None:
    """A million-lead org unit's details, measured at a thousand leads: repeated
    texts take one index each, and a display name that is the email is not held twice."""
    rows = [
        {
            "display_name": f"lead{i}@example.com",
            "email": f"lead{i}@example.com",
            "first_name": ("Anna", "Omar")[i % 2],
            "title": "VP Sales",
            "company": f"Company {i % 50} Inc",
            "score": i % 7,
            "account_id": f"00000000-0000-0000-0000-{i % 50:012d}",
            "deal_amount": Decimal(i % 50),
        }
        for i in range(1000)
    ]
    facts = pl.DataFrame(rows, schema=SCHEMA)
    views = 16 * facts.height * sum(dtype == pl.String for dtype in SCHEMA.dtypes())
    assert Details.of(facts).nbytes() < (facts.estimated_size() + views) / 4


def test_details_with_appended_chunks_survive_the_load_files(tmp_path: Path) -> None:
    """The files a load writes hold each chunk's own dictionary."""
    layout = built_from(raw_events({1: ("a", None, "L1", 0, 0)}))
    blank = dict.fromkeys(COLUMNS)
    extra = pl.DataFrame([{**blank, "title": f"t{i}", "score": i} for i in range(5)], schema=SCHEMA)
    appended = layout.details.appended(extra)
    assert appended.table.column("title").num_chunks == 2
    write_layout(dataclasses.replace(layout, details=appended), tmp_path)
    assert read_layout(tmp_path).details.frame().equals(appended.frame())


def test_money_keeps_its_scale() -> None:
    facts = pl.DataFrame(
        [{**dict.fromkeys(COLUMNS), "deal_amount": Decimal("0.10")}] * 3, schema=SCHEMA
    )
    (amount,) = Details.of(facts).take(pl.Series([2], dtype=pl.UInt32)).get_column("deal_amount")
    assert str(amount) == "0.10"
    assert Details.of(facts).frame().schema["deal_amount"] == MONEY


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["a" * 12] * 10, 16 * 10),  # inside their views
        (["a" * 13] * 10, 29 * 10),  # beside them
        ([None] * 10, 16 * 10 + 2),  # a view and a validity bit each
        ([], 0),
    ],
)
def test_a_text_column_is_counted_with_its_views(texts: list[str | None], expected: int) -> None:
    assert series_bytes(pl.Series(texts, dtype=pl.String)) == expected

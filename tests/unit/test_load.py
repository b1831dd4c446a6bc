"""A full load's reading of its events, on Arrow reads shaped as the driver gives them."""

from __future__ import annotations

import itertools
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine.codes import Dictionaries, encode_events
from kenbun_analytics.engine.encode import base_events, raw_events_frame
from kenbun_analytics.engine.frames import KEYS
from kenbun_analytics.refresh.child import _child_started, _context

READ = pa.schema(
    {
        "event_id": pa.int64(),
        "occurred_at": pa.timestamp("us", "UTC"),
        "lead_key": pa.uuid(),
        "campaign": pa.string(),
        "source": pa.string(),
        "medium": pa.string(),
        "score_delta": pa.string(),
    }
)
"""An events read as the ADBC driver gives it (``source.EVENTS_OF_ORG_UNIT``)."""

T0 = datetime(2026, 3, 1, tzinfo=UTC)

# A few values each, so that values repeat across rows and chunks; NULLIF in the
# read leaves no empty UTM text, but score_delta can be any text.
utm = st.one_of(st.none(), st.sampled_from(["a", "b", "spring", "Spring", "é", "a b"]))
row = st.tuples(
    st.integers(0, 40),  # minutes after T0
    st.one_of(st.none(), st.integers(0, 5)),  # lead
    utm,
    utm,
    utm,
    st.one_of(st.none(), st.sampled_from(["2.5", "-3", "", "1e3", "7", "0.49"])),
)


def read_of(rows: list[tuple[object, ...]], cuts: list[int]) -> pa.Table:
    """``rows`` as a read in chunks that end at ``cuts``."""
    columns: dict[str, list[object]] = {name: [] for name in READ.names}
    for event_id, (minute, lead, campaign, source, medium, score) in enumerate(rows):
        columns["event_id"].append(1000 - event_id)
        columns["occurred_at"].append(T0 + timedelta(minutes=int(str(minute))))
        columns["lead_key"].append(None if lead is None else uuid.UUID(int=int(str(lead))).bytes)
        for name, value in zip(KEYS, (campaign, source, medium), strict=True):
            columns[name].append(value)
        columns["score_delta"].append(score)
    table = pa.table(columns, schema=READ)
    bounds = sorted({0, len(rows), *(cut for cut in cuts if cut < len(rows))})
    return pa.Table.from_batches(
        [
            batch
            for start, end in itertools.pairwise(bounds)
            for batch in table.slice(start, end - start).to_batches()
        ],
        schema=READ,
    )


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row, max_size=40), cuts=st.lists(st.integers(1, 39), max_size=4))
def test_a_full_load_reads_its_events_as_the_incremental_path_does(
    rows: list[tuple[object, ...]], cuts: list[int]
) -> None:
    """base_events (Arrow's hashing, chunk by chunk) gives the base events and
    dictionaries that encoding the raw frame does, and drops exactly the events
    without any UTM value."""
    table = read_of(rows, cuts)
    base, dictionaries = base_events(table)
    expected, expected_dictionaries = encode_events(raw_events_frame(table), Dictionaries.empty())
    assert base.equals(expected)
    for key in (*KEYS, "lead_key"):
        assert dictionaries.of(key).equals(expected_dictionaries.of(key)), key
    counting = [1000 - i for i, r in enumerate(rows) if any(v is not None for v in r[2:5])]
    assert base.get_column("event_id").to_list() == counting


def test_an_empty_read_gives_no_events() -> None:
    base, dictionaries = base_events(READ.empty_table())
    assert base.is_empty()
    assert all(dictionaries.of(key).is_empty() for key in (*KEYS, "lead_key"))


NEVER_PURGE = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""The settings of ``kenbun_analytics.refresh.child_allocator``, spelled here: importing
that module would set them in this process."""


def child_allocator_settings() -> str | None:
    return os.environ.get("_RJEM_MALLOC_CONF")


def test_a_load_child_is_set_to_keep_the_pages_it_frees() -> None:
    """The fork server imports the allocator settings before Polars, and they come
    last, so that jemalloc takes them over Polars' own; the server's are Polars'."""
    with ProcessPoolExecutor(1, mp_context=_context(), initializer=_child_started) as child:
        settings_there = child.submit(child_allocator_settings).result()
    assert settings_there is not None
    assert settings_there.endswith(NEVER_PURGE)
    assert NEVER_PURGE not in (os.environ.get("_RJEM_MALLOC_CONF") or "")

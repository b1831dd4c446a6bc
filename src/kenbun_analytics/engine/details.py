"""The per-lead details that only the drilldown shows, held compactly in Arrow.

Polars holds every text as a 16-byte view, null or not, plus the text itself
when it is longer than 12 bytes: for short texts the views cost more than the
texts themselves. The drilldown reads these details
for at most 500 leads a request, so they are held as an Arrow table instead:

- a column that repeats its values (a first name, a title, an account's name
  or deal) is dictionary-encoded with the narrowest index that holds it;
- any other text has 4-byte offsets;
- a lead's display name is not held again where it is its email: the source
  spells the display name as the email whenever there is one.

The table is in lead-code order, as the hot per-lead columns of
:class:`kenbun_analytics.engine.layout.Layout` are; :meth:`Details.take` gathers the
few rows an answer shows and gives them back to Polars.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

COLUMNS = (
    "display_name",
    "email",
    "first_name",
    "last_name",
    "title",
    "company",
    "score",
    "level",
    "account_id",
    "account_name",
    "deal_stage",
    "deal_amount",
)
"""The drilldown's per-lead columns between lead_id and the touch times, in order."""

INDEX_TYPES = (pa.int8(), pa.int16(), pa.int32(), pa.int64())
"""Dictionary index types, narrowest first."""


def _holds(index: pa.DataType, entries: int) -> bool:
    """Whether ``index`` numbers a dictionary of ``entries`` values."""
    return bool(entries <= 1 << (index.bit_width - 1))


def _encoded(array: pa.Array, index: pa.DataType | None = None) -> pa.DictionaryArray | None:
    """``array`` dictionary-encoded, with ``index`` (else the narrowest that
    holds its values) as its index type; None when ``index`` cannot hold them."""
    encoded = array.dictionary_encode()
    entries = len(encoded.dictionary)
    index = index or next(dtype for dtype in INDEX_TYPES if _holds(dtype, entries))
    if not _holds(index, entries):
        return None
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(index), encoded.dictionary)


def _plain(column: pl.Series) -> pa.Array:
    """``column`` as Arrow, texts with 4-byte offsets where they fit."""
    array = column.to_arrow(compat_level=pl.CompatLevel.oldest())
    if column.dtype == pl.String:
        array = array.cast(pa.string() if array.nbytes < 1 << 31 else pa.large_string())
    return array


def _compact(column: pl.Series) -> pa.Array:
    """``column`` as Arrow in the fewer bytes: dictionary-encoded with the
    narrowest index, or plainly."""
    plain = _plain(column)
    return min(plain, _encoded(plain), key=lambda array: array.get_total_buffer_size())


def _stored(facts: pl.DataFrame) -> pl.DataFrame:
    """The columns as held: the display name only where it is not the email."""
    return facts.select(COLUMNS).with_columns(
        pl.when(pl.col("display_name").ne_missing(pl.col("email"))).then(pl.col("display_name"))
    )


@dataclass(frozen=True, slots=True)
class Details:
    """One row per lead code: the :data:`COLUMNS` of each lead."""

    table: pa.Table

    @classmethod
    def of(cls, facts: pl.DataFrame) -> Details:
        """The details of ``facts`` (every one of :data:`COLUMNS`), row for row."""
        stored = _stored(facts)
        return cls(pa.table({name: _compact(stored.get_column(name)) for name in COLUMNS}))

    @property
    def height(self) -> int:
        return int(self.table.num_rows)

    def appended(self, facts: pl.DataFrame) -> Details:
        """These details, then those of ``facts``: a chunk of their own in each
        column's type, or all again when a new chunk's values outgrow an index."""
        if facts.is_empty():
            return self
        stored = _stored(facts)
        columns = []
        for name, field in zip(COLUMNS, self.table.schema, strict=True):
            array = _plain(stored.get_column(name))
            if pa.types.is_dictionary(field.type):
                array = _encoded(array.cast(field.type.value_type), field.type.index_type)
                if array is None:  # more new values than this column's index numbers
                    return Details.of(pl.concat([self.frame(), facts.select(COLUMNS)]))
            columns.append(array.cast(field.type))
        return Details(
            pa.concat_tables([self.table, pa.Table.from_arrays(columns, schema=self.table.schema)])
        )

    def take(self, codes: pl.Series) -> pl.DataFrame:
        """The details of the leads ``codes``, in their order, as Polars columns."""
        taken = self.table.take(codes.to_arrow())
        plain = pa.schema(
            field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
            for field in taken.schema
        )
        frame = pl.DataFrame(taken.cast(plain))
        return frame.with_columns(pl.col("display_name").fill_null(pl.col("email")))

    def frame(self) -> pl.DataFrame:
        """Every lead's details, as :meth:`take` gives them."""
        return self.take(pl.int_range(self.height, dtype=pl.UInt32, eager=True))

    def nbytes(self) -> int:
        """The bytes the table holds (its dictionaries counted)."""
        return int(self.table.get_total_buffer_size())

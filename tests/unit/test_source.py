"""Parameters written into a statement: only integers and uuids, spelled from
their parsed values."""

from __future__ import annotations

import uuid

import pytest

from kenbun_analytics.source.postgres import Literal, inlined

UNIT = uuid.UUID("641e1eaf-8118-eafc-57db-42fc8f14449c")


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        (
            "org_unit_id = $1::uuid AND id % $2::bigint = $3::bigint",
            (UNIT, 2, -1),
            f"org_unit_id = '{UNIT}'::uuid AND id % 2::bigint = -1::bigint",
        ),
        ("id = ANY($1::bigint[])", ([3, 1, 2],), "id = ANY('{3,1,2}'::bigint[])"),
        ("id = ANY($1::bigint[])", ([],), "id = ANY('{}'::bigint[])"),
        ("id = ANY($1::text::uuid[])", ([UNIT],), f"id = ANY('{{{UNIT}}}'::text::uuid[])"),
        ("$10 $1", tuple(range(1, 11)), "10 1"),
    ],
)
def test_parameters_are_written_in_as_literals(
    sql: str, params: tuple[Literal, ...], expected: str
) -> None:
    assert inlined(sql, params) == expected


@pytest.mark.parametrize("value", ["1; DROP TABLE events", True, 1.5, [1, "2"]])
def test_anything_but_integers_and_uuids_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        inlined("$1", (value,))  # type: ignore[arg-type]

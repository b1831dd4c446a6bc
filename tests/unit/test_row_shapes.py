"""The wire's row shapes: the engine's frames and the documented Structs name the
same fields in the same order, so the JSON the engine writes is what the
OpenAPI document (built from the Structs) says."""

from __future__ import annotations

import msgspec
import pytest

from kenbun_analytics.engine.dashboards import TOTALS
from kenbun_analytics.engine.details import COLUMNS
from kenbun_analytics.engine.queries import CAMPAIGN_ROW
from kenbun_analytics.web.schemas import CampaignRow, LeadRow, Totals


def fields(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    return struct.__struct_fields__


@pytest.mark.parametrize(
    ("engine", "documented"),
    [
        (tuple(CAMPAIGN_ROW.names()), fields(CampaignRow)),
        (("lead_id", *COLUMNS, "first_touch_at", "last_touch_at"), fields(LeadRow)),
        (tuple(TOTALS.names()), fields(Totals)),
    ],
    ids=["campaign row", "lead row", "totals"],
)
def test_engine_rows_and_documented_structs_agree(
    engine: tuple[str, ...], documented: tuple[str, ...]
) -> None:
    """A field added to one side and not the other fails here, not in a client."""
    assert engine == documented

"""What each analytics answer is: the engine's query over a snapshot, encoded as
the body the cache keeps."""

from __future__ import annotations

from datetime import datetime

import msgspec

from kenbun_analytics.engine import queries
from kenbun_analytics.engine.wire import json_array
from kenbun_analytics.store import Snapshot
from kenbun_analytics.web.schemas import CampaignsEnvelope, LeadsEnvelope, json_encoder


def campaigns_body(
    snapshot: Snapshot, group_by: str, start: datetime | None, end: datetime | None
) -> bytes:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, start, end)
    rows = queries.campaign_rows(layout, group_by=group_by, lo=lo, hi=hi).collect()
    return json_encoder.encode(
        CampaignsEnvelope(group_by=group_by, campaigns=msgspec.Raw(json_array(rows)))
    )


def leads_body(
    snapshot: Snapshot,
    group_by: str,
    campaign_name: str,
    start: datetime | None,
    end: datetime | None,
) -> bytes:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, start, end)
    code = layout.codes[group_by].get(campaign_name)
    rows = queries.campaign_leads(layout, rows=layout.rows_of(group_by, code, lo, hi))
    return json_encoder.encode(
        LeadsEnvelope(campaign_name=campaign_name, leads=msgspec.Raw(json_array(rows)))
    )

"""When refreshes run: APScheduler fires a short tick, and the refresher decides at
each tick whether a refresh is due (its interval, its backoff after a failure,
a full reconciliation), so the timing rules live in one place,
:class:`~kenbun_analytics.refresh.refresher.Refresher`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler


class Ticking(Protocol):
    """A :class:`~kenbun_analytics.refresh.refresher.Refresher`, or a
    :class:`~kenbun_analytics.refresh.deployment.Deployment` that refreshes or follows."""

    def tick(self) -> None: ...


def start_scheduler(refresher: Ticking, *, tick_seconds: float = 1.0) -> BackgroundScheduler:
    """Call ``refresher.tick`` now and then every ``tick_seconds``, never twice at once.

    The refresher decides whether a refresh is due (the interval after a success,
    a doubling backoff after failures); the tick itself never raises.
    """
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        refresher.tick,
        "interval",
        seconds=tick_seconds,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="refresh",
    )
    scheduler.start()
    return scheduler

"""The refresher lock against a real PostgreSQL: a holder that falls silent loses
it to the next process without closing anything, and a holder that keeps running
keeps it however long its refresh takes."""

from __future__ import annotations

import time

from kenbun_analytics.source.lock import Election

SILENCE = 2.0


def test_a_holder_that_keeps_running_keeps_the_lock(database_url: str) -> None:
    """No statement of its own for three times the silence: the heartbeat keeps
    the session, and so the lock."""
    holder, other = Election(database_url, silence_seconds=SILENCE), Election(database_url)
    try:
        assert holder.hold()
        time.sleep(3 * SILENCE)
        assert not other.hold()
        assert holder.still_held()
    finally:
        holder.close()
        other.close()


def test_a_holder_that_falls_silent_loses_the_lock_to_the_next_process(
    database_url: str,
) -> None:
    """Its heartbeat stopped, as in a frozen process or a host gone: PostgreSQL ends
    the session after the silence, and another process takes the lock."""
    holder, other = Election(database_url, silence_seconds=SILENCE), Election(database_url)
    try:
        assert holder.hold()
        assert not other.hold()
        holder._closed.set()  # the heartbeat stops; the session stays open, silent
        deadline = time.monotonic() + SILENCE + 10
        while not other.hold():
            assert time.monotonic() < deadline, "the silent holder kept the lock"
            time.sleep(0.2)
        assert not holder.still_held()
        assert holder.error is not None
    finally:
        holder.close()
        other.close()

"""CPU priority of loading work: lowered, so that requests take the cores first.

Two things decide how Linux shares the cores, and loading has to give way in
both:

* a thread's niceness, which weighs it against the threads of its own
  scheduling group;
* with autogroups (``/proc/sys/kernel/sched_autogroup_enabled``, on by default
  in most distributions), the group: every session is one group, and the
  groups share the cores equally whatever their threads' niceness.

The load's own threads are lowered by niceness (they share the server's
session). A PostgreSQL server process is different: it makes itself a session
of its own, so when PostgreSQL runs on this machine under our OS user (the
embedded one), its reading for a load would take a whole group's share, a full
core of two, beside the server. :func:`lower_server_process` lowers such a
process's niceness and its own group's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

LOAD_NICENESS = 10
"""How much lower than the requests' the CPU priority of loading is (the reader
threads of an in-process load, the whole child process otherwise, and the
PostgreSQL server processes that read for them where we may lower those)."""

_AUTOGROUP_RETRIES = 5
"""Without privileges a group's niceness may change once per 100 ms machine-wide."""


def lower_thread(niceness: int = LOAD_NICENESS) -> None:
    """Lower the calling thread's CPU priority by ``niceness`` (Linux: niceness is
    per thread, and threads started later inherit it)."""
    with contextlib.suppress(OSError, AttributeError):
        _renice(threading.get_native_id(), niceness)


def lower_server_process(pid: int, client: str, niceness: int = LOAD_NICENESS) -> bool:
    """Lower the CPU priority of the PostgreSQL server process ``pid`` that serves
    the connection named ``client`` (``[local]`` or ``(port)``, as its title shows
    it); whether it was lowered.

    Only a process whose title names that client is touched, so that a pid seen
    from another pid namespace (PostgreSQL in a container) can never lower some
    other process; one of another OS user is left as it is.
    """
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
        if not (title.startswith(b"postgres: ") and client.encode() in title):
            return False
        _renice(pid, niceness)
    except (OSError, AttributeError):  # not ours to lower, or not Linux
        return False
    if os.getsid(pid) == pid:  # its group is its session's, and the session is its own
        _lower_autogroup(pid, niceness)
    return True


def _renice(who: int, niceness: int) -> None:
    """Add ``niceness`` to a thread's or process's (the kernel caps it at 19)."""
    os.setpriority(os.PRIO_PROCESS, who, os.getpriority(os.PRIO_PROCESS, who) + niceness)


def _lower_autogroup(pid: int, niceness: int) -> None:
    group = Path(f"/proc/{pid}/autogroup")
    for _ in range(_AUTOGROUP_RETRIES):
        try:
            # "/autogroup-123 nice 0"
            current = int(group.read_text().split()[-1])
            group.write_text(str(min(19, current + niceness)))
            return
        except BlockingIOError:  # EAGAIN: another group changed in the last 100 ms
            time.sleep(0.11)
        except (OSError, ValueError):  # no autogroups here
            return

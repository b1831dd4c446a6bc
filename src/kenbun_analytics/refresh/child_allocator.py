"""The allocator settings of full-load children, imported first by their fork server.

Polars allocates through jemalloc, which returns freed pages to the system on a
background thread. jemalloc turns that thread off in a forked child, so a child
forked from a fork server that has Polars imported already returns them inline,
on the threads doing the work, which slows a derivation markedly. A child keeps
its freed pages for reuse instead (a higher peak resident memory, measured in
benchmarks/README.md), and gives all of its memory back when it exits at the
end of the refresh.

This module is imported by the fork server before Polars. Polars' import sets
``_RJEM_MALLOC_CONF`` to its own defaults followed by whatever the variable
held (the server's import already set it, and the fork server inherits that),
and jemalloc reads it once, at its first allocation, taking the last value of
each option: so these settings go last. The server itself never imports this.
"""

from __future__ import annotations

import os

CHILD_MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""Never return freed pages to the system (until the process exits)."""

_inherited = os.environ.get("_RJEM_MALLOC_CONF")
os.environ["_RJEM_MALLOC_CONF"] = ",".join(filter(None, (_inherited, CHILD_MALLOC_CONF)))

"""When and how snapshots are brought up to date.

``refresher`` decides, at each tick of ``schedule``, between a full load and an
incremental patch; a full load (``full``) runs in a child process (``child``,
at a lower CPU priority: ``priority``, ``child_allocator``), which hands each
layout back as Arrow IPC files (``handover``); a patch runs in the server
(:func:`kenbun_analytics.engine.patch.update`).
"""

"""The pure engine: Polars, NumPy and Arrow over a snapshot's layout; no I/O.

It imports nothing of the package but itself (and ``errors``). A
:class:`~kenbun_analytics.engine.layout.Layout` comes from one of two paths:

- the full path, :func:`~kenbun_analytics.engine.encode.full_layout` (a full
  load's reads, encoded, then :func:`~kenbun_analytics.engine.layout.build`);
- the patched path, :func:`~kenbun_analytics.engine.patch.update` (a layout
  after some events changed: patched in place where it can be, else derived
  again from its own events).

By concern: ``frames`` (schemas and constants), ``points`` (score_delta to
points), ``codes`` (dictionaries), ``times`` (four bytes an event), ``previous``
(previous-pair-day columns), ``index`` (value indexes), ``days`` (day totals),
``details`` (the drilldown's per-lead details), ``layout`` (the Layout and its
build); then the queries over it: ``queries`` (the aggregate and the
drilldown), ``filters``, ``zones`` and ``dashboards`` (filters, time zones,
totals, time series, pages), and ``wire`` (JSON text of result rows).
"""

"""The pure engine: Polars, NumPy and Arrow over a snapshot's layout; no I/O."""

"""Helpers shared by tests/ and benchmarks/: the straight-SQL reference World and
the hostile-request corpus. Neither side reaches into the other for them."""

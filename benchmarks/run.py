"""The benchmark command; the measurements are in :mod:`benchmarks.harness`.

    python -m benchmarks.run --events 100000        # < 2 minutes; part of CI
    python -m benchmarks.run --events 10000000      # manual; seeds once, then reuses

Only this module runs as ``__main__``, and it imports nothing at the top: a full
load's child process imports the main module again, and the harness's imports
(DuckDB, Litestar, psycopg) cost each measured full load about 0.5 s that
``kenbun-analytics serve``, whose main module imports next to nothing, never pays.
"""

if __name__ == "__main__":
    from benchmarks.harness import main

    main()

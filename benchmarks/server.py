"""The service plus a ``/constant`` route, for the load test's same-server baseline.

python -m benchmarks.server --database-url URL --port P
"""

from __future__ import annotations

import argparse

import uvicorn
from litestar import get

from kenbun_analytics.settings import Settings
from kenbun_analytics.web.app import create_app
from kenbun_analytics.web.serving import uvicorn_options


@get("/constant", sync_to_thread=False)
def constant() -> dict[str, str]:
    """What a route costs when it computes nothing."""
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(Settings(database_url=args.database_url, refresh_seconds=3600))
    app.register(constant)
    # As `kenbun-analytics serve` runs it, with its log lines left unconfigured.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **uvicorn_options())


if __name__ == "__main__":
    main()

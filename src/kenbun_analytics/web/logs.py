"""JSON log lines, with the request id and without credentials.

The standard library only: the supervisor of ``serve --workers N`` logs in the
same format without importing the app (or Polars) it never runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Defence in depth: nothing we log should hold a credential, but if a message ever
# quotes one, the secret part never reaches the log.
_CREDENTIAL = re.compile(
    r"kbn_(?:pat|sas)_[0-9A-Za-z]*|(?i:\b(?:bearer|basic)\s+)[^\s\"',;]+", re.ASCII
)


def redact(text: str) -> str:
    return _CREDENTIAL.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Exceptions are reduced to their type: no traceback,
    file path or SQL text reaches a log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process, uvicorn's own loggers included."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

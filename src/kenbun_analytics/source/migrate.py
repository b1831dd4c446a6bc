"""The packaged migrations (``migrations/*.sql`` beside this module) and how a
migration file is split into the statements ADBC prepares one at a time."""

from __future__ import annotations

import re
from importlib import resources


def migrations() -> list[tuple[str, str]]:
    """The packaged migrations, ``(name, sql)`` in the order they apply."""
    folder = resources.files("kenbun_analytics.source") / "migrations"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


_TOKEN = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$([A-Za-z_]*)\$|;", re.S
)


_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (ADBC prepares one at a time).

    Knows comments, quoted strings and identifiers, and dollar-quoted bodies.
    """
    statements: list[str] = []
    start = position = 0
    while (match := _TOKEN.search(sql, position)) is not None:
        lexeme = match.group(0)
        position = match.end()
        if lexeme.startswith("$"):
            closing = sql.find(lexeme, position)
            position = len(sql) if closing < 0 else closing + len(lexeme)
        elif lexeme == ";":
            statements.append(sql[start : match.start()])
            start = position
    statements.append(sql[start:])
    return [text.strip() for text in statements if _COMMENT.sub("", text).strip()]

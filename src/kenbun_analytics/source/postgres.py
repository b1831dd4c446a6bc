"""The service's connections to PostgreSQL and its snapshot reads: SQL text, ADBC
connections, Arrow results, the change log, and applying the migrations.

Every read runs on an autocommit connection, so no session is ever left idle
in a transaction, and under ``statement_timeout`` so that a hung read is
cancelled by the server rather than stalling the refresh forever.

The SQL below computes the per-row facts that the semantics fix exactly
(the UTM text, the preferred alias, the most recent deal, the per-account deal
sums) so that PostgreSQL's own ``->>``, ``btrim`` and ``lower`` define them, the
same functions a straight SQL check uses. The one exception is the score_delta
reading: it arrives as text and :func:`kenbun_analytics.engine.points.read_points`
rounds it (a property test holds it to PostgreSQL's ``round``).
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa

from kenbun_analytics.errors import SourceError
from kenbun_analytics.source.migrate import migrations, split_statements
from kenbun_analytics.source.priority import lower_server_process

TRIM_CHARACTERS = r"E' \t\n\r'"
"""What a level or stage is trimmed of at either end before it is compared
(``btrim(text, TRIM_CHARACTERS)``): spaces, tabs, line feeds and carriage returns.
PostgreSQL's one-argument ``trim`` removes spaces only."""

# The events that are not the duplicate of a normalized pair. Of those, only the
# ones holding at least one UTM key with a non-empty value can ever count: the
# reader drops the others (engine.encode.counting), because PostgreSQL computes
# each ``->>`` of the WHERE again, a large share of the read for the few rows it
# drops. score_delta comes as its text (a JSON number's is its plain decimal
# spelling): engine.points.read_points reads it, because PostgreSQL's numeric
# rounding of every event's text costs more than reading the rows.
_EVENTS = """
SELECT {unit}e.id AS event_id,
       e.occurred_at,
       e.lead_id AS lead_key,
       NULLIF(e.metadata ->> 'utm_campaign', '') AS campaign,
       NULLIF(e.metadata ->> 'utm_source', '') AS source,
       NULLIF(e.metadata ->> 'utm_medium', '') AS medium,
       e.metadata ->> 'score_delta' AS score_delta
FROM events e
WHERE NOT (e.normalized AND NOT e.normalized_parent)
"""

# Part $3 of $2: a full load reads the parts side by side, on connections of their own.
EVENTS_OF_ORG_UNIT = (
    _EVENTS.replace("{unit}", "")
    + "  AND e.org_unit_id = $1::uuid AND e.id % $2::bigint = $3::bigint"
)
EVENTS_BY_ID = (
    _EVENTS.replace("{unit}", "e.org_unit_id::text AS org_unit_id,\n       ")
    + "  AND e.id = ANY($1::bigint[])"
)

# The org unit's leads are filtered anew in each part rather than in a CTE of
# their own: PostgreSQL materializes a CTE read twice (to disk, for a large org
# unit), which made the statement slower.
_LEADS = """
WITH preferred AS (
    -- Where the visibility map allows, PostgreSQL reads the aliases from their
    -- index (migration 0005) already in this order, merged with the leads
    -- sorted by id, and skips sorting them.
    SELECT DISTINCT ON (a.lead_id, a.kind) a.lead_id, a.kind, a.value
    FROM lead_aliases a JOIN leads l ON l.id = a.lead_id
    WHERE {which} AND a.kind IN ('email', 'phone', 'social', 'external_id', 'cookie')
    ORDER BY a.lead_id, a.kind, a.is_primary DESC, a.created_at, a.id
), aliases AS (
    SELECT lead_id,
           max(value) FILTER (WHERE kind = 'email') AS email,
           max(value) FILTER (WHERE kind = 'phone') AS phone,
           max(value) FILTER (WHERE kind = 'social') AS social,
           max(value) FILTER (WHERE kind = 'external_id') AS external_id,
           max(value) FILTER (WHERE kind = 'cookie') AS cookie
    FROM preferred GROUP BY lead_id
), latest_deal AS (
    -- "the account's most recent deal": whatever org unit holds it, unlike the
    -- aggregate, whose deals are those of the same org unit.
    SELECT DISTINCT ON (d.account_id) d.account_id, d.stage, d.amount
    FROM deals d
    WHERE d.account_id IN (SELECT l.account_id FROM leads l WHERE {which})
    ORDER BY d.account_id, d.created_at DESC, d.id DESC
)
SELECT l.id AS lead_key,
       COALESCE(lower(btrim(l.engagement_level, {trim_characters})) IN ('warm', 'hot'), false)
           AS is_mql,
       l.account_id::text AS account_id,
       COALESCE(a.email, a.phone, a.social, a.external_id, a.cookie) AS display_name,
       a.email,
       COALESCE(l.metadata ->> 'first_name', l.metadata ->> 'firstname') AS first_name,
       COALESCE(l.metadata ->> 'last_name', l.metadata ->> 'lastname') AS last_name,
       l.metadata ->> 'title' AS title,
       l.metadata ->> 'company' AS company,
       COALESCE(l.score, 0) AS score,
       l.engagement_level AS level,
       acc.name AS account_name,
       ld.stage AS deal_stage,
       ld.amount::text AS deal_amount
FROM leads l
LEFT JOIN aliases a ON a.lead_id = l.id
LEFT JOIN accounts acc ON acc.id = l.account_id
LEFT JOIN latest_deal ld ON ld.account_id = l.account_id
WHERE {which}
""".replace("{trim_characters}", TRIM_CHARACTERS)
LEADS_OF_ORG_UNIT = _LEADS.replace("{which}", "l.org_unit_id = $1::uuid")
# Leads of other org units that an org unit's events name: they count there with
# their own facts (the semantics join events to leads by id alone).
LEADS_BY_ID = _LEADS.replace("{which}", "l.id = ANY($1::text::uuid[])")

# One row per account with deals: a deal belongs to one account, so the distinct
# deals reachable from a set of accounts are exactly the sum of these per-account rows.
ACCOUNT_DEALS_OF_ORG_UNIT = f"""
SELECT d.account_id::text AS account_id,
       count(*) AS deals_count,
       COALESCE(sum(d.amount), 0)::text AS pipeline_value,
       COALESCE(sum(d.amount) FILTER (
           WHERE lower(btrim(d.stage, {TRIM_CHARACTERS})) IN ('closedwon', 'closed_won')), 0)::text
           AS closed_won_value
FROM deals d
WHERE d.org_unit_id = $1::uuid AND d.account_id IS NOT NULL
GROUP BY d.account_id
"""

WORK_MEM = "64MB"
"""Per sort or hash of our reads, for this session only; the database is left as it is."""

CHANGES_SINCE = """
SELECT table_name, org_unit_id::text AS org_unit_id, event_id
FROM kenbun_analytics_changes WHERE xid >= $1::text::xid8
"""


@dataclass(frozen=True, slots=True)
class Changes:
    """What was written since a previous read, as the change log tells it."""

    everything: bool
    """A TRUNCATE happened: reload every org unit."""
    whole_units: frozenset[str]
    """Org units whose events changed too much to list, or whose leads, aliases,
    accounts or deals changed: reload these whole."""
    dimension_units: frozenset[str]
    """Org units whose leads, aliases, accounts or deals changed."""
    event_ids: tuple[int, ...]
    """Events to fetch again (inserted, updated or deleted)."""
    event_units: frozenset[str]
    """Org units that those events belonged to or belong to now."""


def _with_connect_timeout(url: str, seconds: int) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if "connect_timeout" in query:
        return url
    extra = f"connect_timeout={seconds}"
    return urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{extra}".lstrip("&")))


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What a :class:`Source` is opened with: picklable, so that a child process
    (:mod:`kenbun_analytics.refresh.child`) can open its own."""

    url: str
    statement_timeout_seconds: float
    application_name: str
    connections: int
    backend_niceness: int


class Source:
    """A kenbun PostgreSQL database, read through ADBC into Arrow.

    Thread-safe: a call takes a connection of its own from a small pool (at
    most ``connections`` open at once) for its whole round trip, so that a
    refresh can read an org unit's events and its per-lead facts side by side.
    A failed call closes its connection and the idle ones; the next call opens a
    new one. Every
    failure surfaces as :class:`SourceError` with no SQL in its text.

    With ``backend_niceness`` (for background reads), each connection's server
    process runs its statements without parallel workers and is lowered by that
    much where it runs on this machine under our OS user
    (:func:`lower_backend_priority`).
    """

    def __init__(
        self,
        url: str,
        *,
        statement_timeout_seconds: float = 120.0,
        application_name: str = "kenbun-analytics",
        connections: int = 2,
        backend_niceness: int = 0,
    ) -> None:
        self._url = _with_connect_timeout(url, 10)
        self._statement_timeout_ms = int(statement_timeout_seconds * 1000)
        if not re.fullmatch(r"[a-z-]{1,40}", application_name):
            raise ValueError(application_name)
        self.options = SourceOptions(
            url, statement_timeout_seconds, application_name, connections, backend_niceness
        )
        self._application_name = application_name
        self._lock = threading.Lock()
        """Guards ``_idle``; migrations also take it."""
        self._slots = threading.BoundedSemaphore(connections)
        self._idle: list[Any] = []

    @classmethod
    def opened_with(cls, options: SourceOptions) -> Source:
        return cls(
            options.url,
            statement_timeout_seconds=options.statement_timeout_seconds,
            application_name=options.application_name,
            connections=options.connections,
            backend_niceness=options.backend_niceness,
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            _close_quietly(connection)

    def _connect(self) -> Any:
        connection = pg.connect(self._url, autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
            cursor.execute(f"SET application_name = '{self._application_name}'")
            # The snapshot reads sort and hash a whole org unit's aliases and deals;
            # PostgreSQL's default 4MB spills them to disk.
            cursor.execute(f"SET work_mem = '{WORK_MEM}'")
            if self.options.backend_niceness:
                # Parallel workers would be server processes of their own, at the
                # server's priority: this session's statements run in its process alone.
                cursor.execute("SET max_parallel_workers_per_gather = 0")
                lower_backend_priority(cursor, self.options.backend_niceness)
        return connection

    @contextlib.contextmanager
    def _cursor(self, operation: str) -> Iterator[Any]:
        with self._slots:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            try:
                if connection is None:
                    connection = self._connect()
                with connection.cursor() as cursor:
                    yield cursor
            except Exception as error:
                # Whatever broke this connection (a restarted server, a dropped
                # network) has likely broken the idle ones too: start afresh.
                if connection is not None:
                    _close_quietly(connection)
                    connection = None
                self.close()
                raise SourceError(operation, error) from None
            finally:
                if connection is not None:
                    with self._lock:
                        self._idle.append(connection)

    def query(self, operation: str, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run one statement and return its rows as an Arrow table."""
        with self._cursor(operation) as cursor:
            cursor.execute(sql, tuple(params) if params else None)
            table: pa.Table = cursor.fetch_arrow_table()
            return table

    def execute(self, operation: str, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows we need."""
        with self._cursor(operation) as cursor:
            cursor.execute(sql, tuple(params) if params else None)

    # --------------------------------------------------------------- schema --

    def migrate(self) -> list[str]:
        """Apply the packaged migrations not yet recorded; return the names applied."""
        applied: list[str] = []
        operation = "migrate"
        with self._lock:
            try:
                connection = pg.connect(self._url, autocommit=False)
            except Exception as error:
                raise SourceError(operation, error) from None
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('kenbun_analytics_migrate'))"
                    )
                    cursor.execute(
                        "CREATE TABLE IF NOT EXISTS kenbun_analytics_migrations ("
                        " name text PRIMARY KEY,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    cursor.execute("SELECT name FROM kenbun_analytics_migrations")
                    done = set(cursor.fetch_arrow_table().column("name").to_pylist())
                    for name, sql in migrations():
                        if name in done:
                            continue
                        for statement in split_statements(sql):
                            cursor.execute(statement)
                        cursor.execute(
                            "INSERT INTO kenbun_analytics_migrations (name) VALUES ($1)", (name,)
                        )
                        applied.append(name)
                connection.commit()
            except Exception as error:
                with contextlib.suppress(Exception):
                    connection.rollback()
                raise SourceError(operation, error) from None
            finally:
                with contextlib.suppress(Exception):
                    connection.close()
        return applied

    # ------------------------------------------------------------- snapshot --

    def org_unit_ids(self) -> list[str]:
        table = self.query("list org units", "SELECT id::text AS id FROM org_units ORDER BY id")
        return [str(value) for value in table.column("id").to_pylist()]

    def snapshot_xmin(self) -> str:
        """The oldest transaction still invisible to a read starting now."""
        table = self.query(
            "read snapshot xmin",
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin",
        )
        return str(table.column("xmin")[0].as_py())

    def changes_since(self, xmin: str) -> Changes:
        table = self.query("read change log", CHANGES_SINCE, (xmin,))
        everything = False
        whole: set[str] = set()
        dimensions: set[str] = set()
        event_ids: set[int] = set()
        event_units: set[str] = set()
        for row in table.to_pylist():
            unit = row["org_unit_id"]
            if unit is None:
                everything = True
            elif row["table_name"] != "events":
                dimensions.add(unit)
            elif row["event_id"] is None:
                whole.add(unit)
            else:
                event_ids.add(int(row["event_id"]))
                event_units.add(unit)
        return Changes(
            everything=everything,
            whole_units=frozenset(whole),
            dimension_units=frozenset(dimensions),
            event_ids=tuple(sorted(event_ids)),
            event_units=frozenset(event_units),
        )

    def prune_changes(self, older_than_seconds: float) -> None:
        """Forget change-log entries that every refresh has long since read."""
        self.execute(
            "prune change log",
            "DELETE FROM kenbun_analytics_changes "
            "WHERE changed_at < now() - make_interval(secs => $1)",
            (float(older_than_seconds),),
        )

    def count_full_load(self, org_unit_id: str) -> None:
        """Record one full load of the org unit (migration 0006): a deployment's
        loads are counted in the database it loads from, whichever process ran them."""
        self.execute(
            "count a full load",
            "INSERT INTO kenbun_analytics_full_loads (org_unit_id) VALUES ($1::text::uuid)",
            (org_unit_id,),
        )

    def events_of(self, org_unit_id: str, *, part: int = 0, parts: int = 1) -> pa.Table:
        """The counting events of an org unit; with ``parts``, those whose id is
        ``part`` modulo ``parts``."""
        return self.stream(
            "load events", EVENTS_OF_ORG_UNIT, (uuid.UUID(org_unit_id), int(parts), int(part))
        )

    def events_by_id(self, event_ids: Sequence[int]) -> pa.Table:
        return self.stream("load changed events", EVENTS_BY_ID, ([int(i) for i in event_ids],))

    def leads_of(self, org_unit_id: str) -> pa.Table:
        return self.stream("load leads", LEADS_OF_ORG_UNIT, (uuid.UUID(org_unit_id),))

    def leads_by_id(self, lead_ids: Sequence[str]) -> pa.Table:
        """The facts of the leads ``lead_ids`` (uuid texts), whatever their org unit."""
        return self.stream("load leads", LEADS_BY_ID, ([uuid.UUID(i) for i in lead_ids],))

    def account_deals_of(self, org_unit_id: str) -> pa.Table:
        return self.stream("load deals", ACCOUNT_DEALS_OF_ORG_UNIT, (uuid.UUID(org_unit_id),))

    def stream(self, operation: str, sql: str, params: Sequence[Literal]) -> pa.Table:
        """:meth:`query` with ``params`` written into the statement (:func:`inlined`),
        so that the driver streams the rows through COPY."""
        return self.query(operation, inlined(sql, params))


Literal = int | uuid.UUID | list[int] | list[uuid.UUID]
"""A parameter :func:`inlined` writes into a statement."""


def inlined(sql: str, params: Sequence[Literal]) -> str:
    """``sql`` with each ``$n`` replaced by the literal of ``params[n - 1]``.

    The ADBC driver reads a statement without parameters through ``COPY ... TO
    STDOUT (FORMAT binary)``, streaming the rows in PostgreSQL's binary format.
    COPY takes no parameters, so a statement with them is read as a prepared
    statement's result instead, markedly slower for a large org unit. Only
    integers and uuids are written in, each spelled by Python from the parsed
    value, so no caller's text reaches the SQL.
    """

    def spelled(value: object) -> str:
        if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        raise TypeError(type(value).__name__)

    def literal(value: Literal) -> str:
        if isinstance(value, list):
            return "'{" + ",".join(spelled(item) for item in value) + "}'"
        return f"'{value}'" if isinstance(value, uuid.UUID) else spelled(value)

    return re.sub(r"\$([0-9]+)", lambda match: literal(params[int(match.group(1)) - 1]), sql)


def lower_backend_priority(cursor: Any, niceness: int) -> None:
    """Lower the CPU priority of this connection's server process by ``niceness``
    where it runs on this machine under our OS user
    (:func:`kenbun_analytics.source.priority.lower_server_process`)."""
    cursor.execute("SELECT pg_backend_pid() AS pid, inet_client_port() AS port")
    row = cursor.fetch_arrow_table().to_pylist()[0]
    client = "[local]" if row["port"] is None else f"({row['port']})"
    lower_server_process(row["pid"], client, niceness)


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):
        connection.close()

"""Migrations create exactly the kenbun schema, repeat harmlessly and leave existing data alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from kenbun_analytics.source.migrate import migrations, split_statements
from kenbun_analytics.source.postgres import Source

CONTRACT = Path(__file__).parent.parent / "fixtures" / "source-schema.sql"
KENBUN_TABLES = (
    "org_units",
    "users",
    "org_unit_memberships",
    "personal_access_tokens",
    "service_accounts",
    "accounts",
    "leads",
    "lead_aliases",
    "deals",
    "events",
)


def shape(url: str) -> dict[str, Any]:
    """Columns (type, nullability, default), keys and constraints of the kenbun tables."""
    with psycopg.connect(url) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, "
            "numeric_precision, numeric_scale, is_identity, identity_generation "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
            (list(KENBUN_TABLES),),
        ).fetchall()
        constraints = connection.execute(
            "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid::regclass::text = ANY(%s) ORDER BY 1, 2, 3",
            (list(KENBUN_TABLES),),
        ).fetchall()
    return {"columns": columns, "constraints": constraints}


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def test_migrations_create_exactly_the_contract_schema(server_url: str) -> None:
    """Names, columns, types, nullability, defaults and keys equal source-schema.sql."""
    ours = create_database(server_url, "kenbun_migrate_ours")
    contract = create_database(server_url, "kenbun_migrate_contract")
    Source(ours).migrate()
    with psycopg.connect(contract, autocommit=True) as connection:
        connection.execute(CONTRACT.read_text())
    assert shape(ours) == shape(contract)
    assert len(shape(ours)["columns"]) == 69  # 3+5+4+9+8+6+8+8+8+10 columns


def test_a_second_run_changes_nothing(database_url: str) -> None:
    """Every migration is recorded; repeating migrate applies none and changes no shape."""
    source = Source(database_url)
    before = shape(database_url)
    assert source.migrate() == []
    assert shape(database_url) == before
    with psycopg.connect(database_url) as connection:
        recorded = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM kenbun_analytics_migrations ORDER BY name"
            )
        ]
    assert recorded == [name for name, _ in migrations()]


def test_an_existing_kenbun_database_keeps_its_data(server_url: str) -> None:
    """Against tables that already exist, migrate adds only what is missing."""
    url = create_database(server_url, "kenbun_migrate_existing")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(CONTRACT.read_text())
        connection.execute("CREATE INDEX their_own_index ON events (occurred_at)")
        connection.execute("CREATE INDEX their_alias_index ON lead_aliases (lead_id)")
        connection.execute(
            "INSERT INTO org_units (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'Theirs')"
        )
        connection.execute(
            "INSERT INTO events (org_unit_id, event_type, occurred_at, metadata) VALUES "
            "('00000000-0000-0000-0000-000000000001', 'view', now(), '{\"utm_campaign\": \"x\"}')"
        )
    before = shape(url)
    applied = Source(url).migrate()
    assert applied == [name for name, _ in migrations()]
    assert shape(url) == before
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert connection.execute("SELECT name FROM org_units").fetchall() == [("Theirs",)]
        indexes = {
            row[0]
            for row in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events'"
            )
        }
        assert "their_own_index" in indexes
        # Ours on lead_aliases is the one the load reads each lead's preferred
        # aliases from (0005 replaced 0002's); theirs stays.
        alias_indexes: dict[str, str] = dict(
            connection.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'lead_aliases'"
            ).fetchall()
        )
        assert alias_indexes.keys() == {
            "lead_aliases_pkey",
            "their_alias_index",
            "kenbun_analytics_lead_aliases_preferred",
        }
        assert alias_indexes["kenbun_analytics_lead_aliases_preferred"].endswith(
            "(lead_id, kind, is_primary DESC, created_at, id) INCLUDE (value)"
        )
        triggers = {
            row[0]
            for row in connection.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
            )
        }
        assert triggers == {
            "kenbun_analytics_insert",
            "kenbun_analytics_update",
            "kenbun_analytics_delete",
            "kenbun_analytics_truncate",
        }


def test_statement_splitter_respects_quotes_comments_and_dollar_bodies() -> None:
    """Semicolons inside strings, comments and $$ bodies do not split statements."""
    sql = "SELECT ';'; -- a; comment\nDO $x$ BEGIN PERFORM 1; END $x$;\n/* ; */ SELECT \"a;b\" FROM t;  "
    assert split_statements(sql) == [
        "SELECT ';'",
        "-- a; comment\nDO $x$ BEGIN PERFORM 1; END $x$",
        '/* ; */ SELECT "a;b" FROM t',
    ]

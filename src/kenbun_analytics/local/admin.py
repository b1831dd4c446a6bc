"""Local administration of kenbun's identity tables: org units, users, memberships, credentials.

kenbun owns these tables; the service only reads them. These helpers exist so
that the demo, the tests and a developer can create what they need locally.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from kenbun_analytics.source.credentials import SECRET_PREFIX, TOKEN_PREFIX, digest, new_secret
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.source.roles import ROLES


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A credential as issued: the only moment its secret exists outside the caller."""

    id: str
    secret: str
    client_id: str | None = None


def create_org_unit(source: Source, name: str, org_unit_id: str | None = None) -> str:
    unit = org_unit_id or str(uuid.uuid4())
    source.execute(
        "create org unit",
        "INSERT INTO org_units (id, name) VALUES ($1::uuid, $2) ON CONFLICT (id) DO NOTHING",
        (unit, name),
    )
    return unit


def create_user(source: Source, email: str, default_org_unit_id: str | None = None) -> str:
    table = source.query(
        "create user",
        "INSERT INTO users (id, email, default_org_unit_id) VALUES ($1::uuid, $2, $3::uuid) "
        "ON CONFLICT (email) DO UPDATE SET default_org_unit_id = "
        "COALESCE(EXCLUDED.default_org_unit_id, users.default_org_unit_id) "
        "RETURNING id::text AS id",
        (str(uuid.uuid4()), email, default_org_unit_id),
    )
    return str(table.column("id")[0].as_py())


def add_membership(source: Source, email: str, org_unit_id: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    source.execute(
        "add membership",
        "INSERT INTO org_unit_memberships (org_unit_id, user_id, role) "
        "SELECT $1::uuid, id, $3 FROM users WHERE email = $2 "
        "ON CONFLICT (org_unit_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        (org_unit_id, email, role),
    )


def remove_membership(source: Source, email: str, org_unit_id: str) -> None:
    source.execute(
        "remove membership",
        "DELETE FROM org_unit_memberships m USING users u "
        "WHERE m.user_id = u.id AND u.email = $1 AND m.org_unit_id = $2::uuid",
        (email, org_unit_id),
    )


def set_user_disabled(source: Source, email: str, *, disabled: bool) -> None:
    source.execute(
        "disable user",
        "UPDATE users SET disabled_at = CASE WHEN $2 THEN now() END WHERE email = $1",
        (email, disabled),
    )


def create_token(
    source: Source, email: str, name: str, expires_in_days: float | None = None
) -> IssuedSecret:
    token = new_secret(TOKEN_PREFIX)
    table = source.query(
        "create token",
        "INSERT INTO personal_access_tokens (id, user_id, name, token_prefix, token_sha256, "
        "expires_at) SELECT $1::uuid, u.id, $2, $3, $4, "
        "now() + make_interval(secs => $5::float8 * 86400) FROM users u WHERE u.email = $6 "
        "RETURNING id::text AS id",
        (str(uuid.uuid4()), name, token[:12], digest(token), expires_in_days, email),
    )
    if table.num_rows == 0:
        raise LookupError(f"no user with email {email!r}: create it first (users create)")
    return IssuedSecret(id=str(table.column("id")[0].as_py()), secret=token)


def create_service_account(
    source: Source, org_unit_id: str, name: str, scopes: list[str]
) -> IssuedSecret:
    secret = new_secret(SECRET_PREFIX)
    client_id = "kbn_sa_" + uuid.uuid4().hex[:20]
    account_id = str(uuid.uuid4())
    source.execute(
        "create service account",
        "INSERT INTO service_accounts (id, org_unit_id, name, client_id, secret_sha256, scopes) "
        "VALUES ($1::uuid, $2::uuid, $3, $4, $5, string_to_array($6, ' '))",
        (account_id, org_unit_id, name, client_id, digest(secret), " ".join(scopes)),
    )
    return IssuedSecret(id=account_id, secret=secret, client_id=client_id)


def revoke_token(source: Source, token_id: str) -> None:
    source.execute(
        "revoke token",
        "UPDATE personal_access_tokens SET revoked_at = now() "
        "WHERE id = $1::uuid AND revoked_at IS NULL",
        (token_id,),
    )


def revoke_service_account(source: Source, client_id: str) -> None:
    source.execute(
        "revoke service account",
        "UPDATE service_accounts SET revoked_at = now() "
        "WHERE client_id = $1 AND revoked_at IS NULL",
        (client_id,),
    )


def list_credentials(source: Source) -> list[dict[str, Any]]:
    table = source.query(
        "list credentials",
        "SELECT 'token' AS kind, t.id::text AS id, u.email AS owner, t.name, t.token_prefix "
        "AS shown, t.expires_at, t.revoked_at FROM personal_access_tokens t "
        "JOIN users u ON u.id = t.user_id "
        "UNION ALL SELECT 'service_account', s.id::text, s.org_unit_id::text, s.name, "
        "s.client_id, NULL, s.revoked_at FROM service_accounts s ORDER BY 1, 3, 4",
    )
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows

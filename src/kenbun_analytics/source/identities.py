"""The credential and membership lookups of authentication: one query each."""

from __future__ import annotations

from typing import Any

from kenbun_analytics.source.postgres import Source
from kenbun_analytics.source.roles import READING_ROLES

PAT_LOOKUP = """
SELECT t.id::text AS credential_id,
       u.id::text AS user_id,
       u.default_org_unit_id::text AS default_org_unit_id,
       (t.revoked_at IS NULL AND u.disabled_at IS NULL
        AND (t.expires_at IS NULL OR t.expires_at > now())) AS active,
       t.expires_at,
       t.token_sha256
FROM personal_access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_sha256 = $1
"""

USER_ACCESS = f"""
SELECT m.org_unit_id::text AS org_unit_id, o.name
FROM org_unit_memberships m JOIN org_units o ON o.id = m.org_unit_id
WHERE m.user_id = $1::uuid AND m.role IN ({", ".join(f"'{role}'" for role in READING_ROLES)})
ORDER BY o.name, o.id
"""

SERVICE_ACCOUNT_PRINCIPAL = """
SELECT s.id::text AS credential_id,
       s.org_unit_id::text AS org_unit_id,
       o.name AS org_unit_name,
       s.revoked_at IS NULL AS active,
       'analytics:read' = ANY(s.scopes) AS can_read,
       s.secret_sha256
FROM service_accounts s JOIN org_units o ON o.id = s.org_unit_id
WHERE s.client_id = $1
"""


def token_principal(source: Source, digest: bytes) -> dict[str, Any] | None:
    rows = source.query("look up token", PAT_LOOKUP, (digest,)).to_pylist()
    return rows[0] if rows else None


def user_access(source: Source, user_id: str) -> list[tuple[str, str]]:
    rows = source.query("look up memberships", USER_ACCESS, (user_id,)).to_pylist()
    return [(row["org_unit_id"], row["name"]) for row in rows]


def service_account_principal(source: Source, client_id: str) -> dict[str, Any] | None:
    rows = source.query("look up service account", SERVICE_ACCOUNT_PRINCIPAL, (client_id,))
    found = rows.to_pylist()
    return found[0] if found else None

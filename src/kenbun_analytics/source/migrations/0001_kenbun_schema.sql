-- 0001: the kenbun tables of shared/spec/source-schema.sql, created only where missing.
-- IF NOT EXISTS leaves an existing kenbun database exactly as it is.
CREATE TABLE IF NOT EXISTS org_units (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- identity --

CREATE TABLE IF NOT EXISTS users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL UNIQUE,
    default_org_unit_id uuid REFERENCES org_units (id) ON DELETE SET NULL,
    disabled_at         timestamptz,              -- set: the user can no longer authenticate
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- role is one of 'owner', 'admin', 'analyst', 'member'.
-- owner, admin and analyst may read analytics; member may not (403).
CREATE TABLE IF NOT EXISTS org_unit_memberships (
    org_unit_id uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_unit_id, user_id)
);

-- A personal access token acts as its user, in any org unit the user may read.
-- Only the SHA-256 digest of the whole token string is stored, never the token.
CREATE TABLE IF NOT EXISTS personal_access_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_prefix text NOT NULL,                   -- first characters, for display only
    token_sha256 bytea NOT NULL UNIQUE,           -- sha256(utf8(token))
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,                     -- NULL: never expires
    revoked_at   timestamptz,                     -- set: rejected from then on
    last_used_at timestamptz
);

-- A service account belongs to exactly one org unit and authenticates with
-- HTTP Basic client_id:client_secret. Only the secret's SHA-256 digest is stored.
-- It may read analytics when 'analytics:read' is in scopes.
CREATE TABLE IF NOT EXISTS service_accounts (
    id            uuid PRIMARY KEY,
    org_unit_id   uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    name          text NOT NULL,
    client_id     text NOT NULL UNIQUE,
    secret_sha256 bytea NOT NULL,                 -- sha256(utf8(client_secret))
    scopes        text[] NOT NULL DEFAULT '{analytics:read}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- ------------------------------------------------------------------- CRM --

CREATE TABLE IF NOT EXISTS accounts (
    id          uuid PRIMARY KEY,
    org_unit_id uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    name        text,
    domain      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- metadata holds free-form lead attributes: first_name or firstname,
-- last_name or lastname, title, company, and anything else.
CREATE TABLE IF NOT EXISTS leads (
    id               uuid PRIMARY KEY,
    org_unit_id      uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    account_id       uuid REFERENCES accounts (id) ON DELETE SET NULL,
    score            integer,                     -- NULL: not calculated yet
    engagement_level text,                        -- 'Cold', 'Warm', 'Hot', ...
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- kind is one of 'email', 'phone', 'social', 'external_id', 'cookie'.
CREATE TABLE IF NOT EXISTS lead_aliases (
    id          uuid PRIMARY KEY,
    org_unit_id uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    lead_id     uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    value       text NOT NULL,
    is_primary  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS deals (
    id          uuid PRIMARY KEY,
    org_unit_id uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    account_id  uuid REFERENCES accounts (id) ON DELETE SET NULL,
    name        text,
    stage       text,                             -- free text: 'negotiation', 'closed_won', 'ClosedWon', ...
    amount      numeric(18, 2),                   -- NULL: no amount yet
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- events --

-- metadata carries utm_campaign, utm_source, utm_medium and score_delta among
-- other keys. A normalized pair is two rows with normalized = true: the
-- canonical one has normalized_parent = true, its duplicate false.
-- Writers update rows (normalization happens after ingestion) and delete
-- rows (erasure requests); updated_at moves on every update.
CREATE TABLE IF NOT EXISTS events (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    org_unit_id       uuid NOT NULL REFERENCES org_units (id) ON DELETE CASCADE,
    lead_id           uuid REFERENCES leads (id) ON DELETE SET NULL,
    event_type        text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    normalized        boolean NOT NULL DEFAULT false,
    normalized_parent boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- 0006: one row per full load of an org unit that a publishing refresher ran
-- (serve --snapshot-dir), so that a deployment's loads can be counted from the
-- database, whichever process ran them. Our own table: the kenbun tables are untouched.
CREATE TABLE IF NOT EXISTS kenbun_analytics_full_loads (
    org_unit_id uuid        NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- 0003: the change log that makes refreshes incremental.
--
-- Statement-level triggers with transition tables record which org units (and, for
-- events, which rows) a write touched, tagged with the writing transaction's id.
-- A refresh reads every entry whose xid is at least the xmin of the snapshot the
-- previous refresh read under: that covers transactions that commit out of order.
-- A statement touching more than 10,000 events records one marker (event_id NULL)
-- that makes the next refresh reload the org unit whole.
CREATE TABLE IF NOT EXISTS kenbun_analytics_changes (
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    table_name  text        NOT NULL,
    org_unit_id uuid,                       -- NULL: every org unit (TRUNCATE)
    event_id    bigint,                     -- NULL: the whole org unit's table
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS kenbun_analytics_changes_xid ON kenbun_analytics_changes (xid);

-- Transition tables exist only for the operations that have them: one function each.
CREATE OR REPLACE FUNCTION kenbun_analytics_record_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id, event_id)
            SELECT DISTINCT 'events', org_unit_id, CASE WHEN per_unit <= 10000 THEN id END
            FROM (SELECT org_unit_id, id, count(*) OVER (PARTITION BY org_unit_id) AS per_unit
                  FROM (SELECT org_unit_id, id FROM kenbun_new_rows) AS touched) AS counted;
    ELSE
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id)
            SELECT DISTINCT TG_TABLE_NAME, org_unit_id FROM (SELECT org_unit_id, id FROM kenbun_new_rows) AS touched;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION kenbun_analytics_record_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id, event_id)
            SELECT DISTINCT 'events', org_unit_id, CASE WHEN per_unit <= 10000 THEN id END
            FROM (SELECT org_unit_id, id, count(*) OVER (PARTITION BY org_unit_id) AS per_unit
                  FROM (SELECT org_unit_id, id FROM kenbun_new_rows UNION ALL SELECT org_unit_id, id FROM kenbun_old_rows) AS touched) AS counted;
    ELSE
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id)
            SELECT DISTINCT TG_TABLE_NAME, org_unit_id FROM (SELECT org_unit_id, id FROM kenbun_new_rows UNION ALL SELECT org_unit_id, id FROM kenbun_old_rows) AS touched;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION kenbun_analytics_record_delete() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id, event_id)
            SELECT DISTINCT 'events', org_unit_id, CASE WHEN per_unit <= 10000 THEN id END
            FROM (SELECT org_unit_id, id, count(*) OVER (PARTITION BY org_unit_id) AS per_unit
                  FROM (SELECT org_unit_id, id FROM kenbun_old_rows) AS touched) AS counted;
    ELSE
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id)
            SELECT DISTINCT TG_TABLE_NAME, org_unit_id FROM (SELECT org_unit_id, id FROM kenbun_old_rows) AS touched;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION kenbun_analytics_record_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO kenbun_analytics_changes (table_name, org_unit_id) VALUES (TG_TABLE_NAME, NULL);
    RETURN NULL;
END
$fn$;

DO $do$
DECLARE
    source_table text;
BEGIN
    FOREACH source_table IN ARRAY ARRAY['events', 'leads', 'lead_aliases', 'accounts', 'deals'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS kenbun_analytics_insert ON %I', source_table);
        EXECUTE format('DROP TRIGGER IF EXISTS kenbun_analytics_update ON %I', source_table);
        EXECUTE format('DROP TRIGGER IF EXISTS kenbun_analytics_delete ON %I', source_table);
        EXECUTE format('DROP TRIGGER IF EXISTS kenbun_analytics_truncate ON %I', source_table);
        EXECUTE format('CREATE TRIGGER kenbun_analytics_insert AFTER INSERT ON %I '
                       'REFERENCING NEW TABLE AS kenbun_new_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION kenbun_analytics_record_insert()', source_table);
        EXECUTE format('CREATE TRIGGER kenbun_analytics_update AFTER UPDATE ON %I '
                       'REFERENCING OLD TABLE AS kenbun_old_rows NEW TABLE AS kenbun_new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION kenbun_analytics_record_update()', source_table);
        EXECUTE format('CREATE TRIGGER kenbun_analytics_delete AFTER DELETE ON %I '
                       'REFERENCING OLD TABLE AS kenbun_old_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION kenbun_analytics_record_delete()', source_table);
        EXECUTE format('CREATE TRIGGER kenbun_analytics_truncate AFTER TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION kenbun_analytics_record_truncate()', source_table);
    END LOOP;
END
$do$;

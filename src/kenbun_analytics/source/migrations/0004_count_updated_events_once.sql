-- 0004: an UPDATE's transition tables hold each row twice (old and new); count
-- each event once against the 10,000-row threshold, so that updating 10,000
-- events is still applied incrementally.
CREATE OR REPLACE FUNCTION kenbun_analytics_record_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id, event_id)
            SELECT DISTINCT 'events', org_unit_id, CASE WHEN per_unit <= 10000 THEN id END
            FROM (SELECT org_unit_id, id, count(*) OVER (PARTITION BY org_unit_id) AS per_unit
                  FROM (SELECT org_unit_id, id FROM kenbun_new_rows
                        UNION SELECT org_unit_id, id FROM kenbun_old_rows) AS touched) AS counted;
    ELSE
        INSERT INTO kenbun_analytics_changes (table_name, org_unit_id)
            SELECT DISTINCT TG_TABLE_NAME, org_unit_id
            FROM (SELECT org_unit_id FROM kenbun_new_rows
                  UNION SELECT org_unit_id FROM kenbun_old_rows) AS touched;
    END IF;
    RETURN NULL;
END
$fn$;

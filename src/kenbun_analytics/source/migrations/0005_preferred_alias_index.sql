-- 0005: each lead's aliases in the order that picks its preferred alias of a
-- kind, with their values: a full load reads them in this order, from the index
-- alone, rather than sorting them. It serves lookups by lead as well, so it replaces 0002's
-- index on lead_id; a kenbun database's own indexes are left as they are.
CREATE INDEX IF NOT EXISTS kenbun_analytics_lead_aliases_preferred
    ON lead_aliases (lead_id, kind, is_primary DESC, created_at, id) INCLUDE (value);
DROP INDEX IF EXISTS kenbun_analytics_lead_aliases_lead;

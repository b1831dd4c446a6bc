-- 0002: indexes for the snapshot reads. IF NOT EXISTS keeps a kenbun database's own
-- indexes and never rewrites data.
CREATE INDEX IF NOT EXISTS kenbun_analytics_events_org_unit ON events (org_unit_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_leads_org_unit ON leads (org_unit_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_lead_aliases_lead ON lead_aliases (lead_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_deals_org_unit ON deals (org_unit_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_deals_account ON deals (account_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_accounts_org_unit ON accounts (org_unit_id);
CREATE INDEX IF NOT EXISTS kenbun_analytics_memberships_user ON org_unit_memberships (user_id);

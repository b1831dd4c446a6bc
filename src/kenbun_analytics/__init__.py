"""kenbun-analytics: fast, exact UTM campaign analytics over kenbun PostgreSQL snapshots."""

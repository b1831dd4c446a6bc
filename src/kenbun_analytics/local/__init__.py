"""Local tooling, behind the ``demo`` extra: the demo, seed data, local
administration of kenbun's identity tables, and the embedded PostgreSQL.
These write kenbun's tables with SQL of their own; the service never does."""

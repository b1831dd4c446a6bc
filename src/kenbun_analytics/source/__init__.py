"""Every SQL statement the service runs against the kenbun database.

``postgres`` holds the connections and the snapshot and change-log reads,
``identities`` the credential lookups, ``migrate`` the packaged migrations
(``migrations/*.sql``), ``roles`` the membership roles. Importing this package
imports nothing: the CLI reads ``roles`` without loading a driver.
(The local tooling, ``local/admin.py`` and the seed, runs SQL of its own to
write kenbun's tables; the service never does.)
"""

"""The roles of an org unit membership, as kenbun's tables define them: one home
for the CLI's choices, the local admin's check and the access lookup's SQL."""

ROLES = ("owner", "admin", "analyst", "member")
READING_ROLES = ("owner", "admin", "analyst")
"""The roles that may read an org unit's analytics; ``member`` may not."""

"""The states a registered model version can be in (kept apart from the tables so code that only names a state, such
as the command line's parser, does not load SQLAlchemy)."""

CANDIDATE = "candidate"
STAGING = "staging"
PRODUCTION = "production"
ARCHIVED = "archived"
DISABLED = "disabled"
STATUSES = (CANDIDATE, STAGING, PRODUCTION, ARCHIVED, DISABLED)

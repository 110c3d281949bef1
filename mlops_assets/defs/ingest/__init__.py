"""Pipeline stage: ingest."""

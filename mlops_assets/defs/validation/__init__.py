"""Pipeline stage: validation."""

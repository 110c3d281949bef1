"""Pipeline stage: packaging."""

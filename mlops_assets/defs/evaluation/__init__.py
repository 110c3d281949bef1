"""Pipeline stage: evaluation."""

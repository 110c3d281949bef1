"""Pipeline stage: training."""

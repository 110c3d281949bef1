"""Deployment: what a release is, how it is checked, and the Cloud Run service it becomes (no Dagster here)."""

"""The model registry: versions, their lineage and their status per environment, in a SQL database."""

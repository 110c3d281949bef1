"""Typed Dagster resources, one per external system."""

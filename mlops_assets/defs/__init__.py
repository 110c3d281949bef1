"""Dagster definitions, one package per pipeline stage."""

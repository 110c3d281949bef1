"""The ML library: datasets, preprocessing, model plug-ins, metrics. Imports no Dagster."""

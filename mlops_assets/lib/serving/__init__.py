"""Serving: what the BentoML service runs per request (guard, batching, logs, settings)."""

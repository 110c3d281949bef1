"""Deployment: what serves in each stage (staging, production), as assets, and checks against the registry."""

"""Promotion: the champion/challenger gate, the promotion asset and the registry jobs."""

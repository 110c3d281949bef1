"""Monitoring: prediction logs against model baselines (drift verdicts), and alerts."""

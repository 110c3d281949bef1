"""Pipeline stage: monitoring (baselines, prediction drift, sensors, schedules, alerts)."""

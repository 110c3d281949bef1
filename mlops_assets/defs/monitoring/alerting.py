"""Alerts sent the way the environment's `monitoring.alerts` settings say (the alert log, plus a webhook when set)."""

from __future__ import annotations

from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.monitoring.alerts import Alert, Delivery, send_alert, webhook_url


def alert_log_path() -> Path:
    """MLOPS_HOME/alerts/alerts.jsonl: every alert of this home, one JSON object per line."""
    return settings.mlops_home() / "alerts" / "alerts.jsonl"


def send(alert: Alert) -> Delivery:
    """Send `alert` through the channels of its environment's file (deployments/<environment>.yaml)."""
    configured = settings.environment_settings(alert.environment).monitoring.alerts
    return send_alert(alert, alert_log_path(), webhook_url(configured.webhook_url_env), configured.webhook_timeout_s)

"""Alerts sent the way the environment's `monitoring.alerts` settings say: the alert log, plus a webhook and Slack
(through dagster-slack) when they are configured."""

from __future__ import annotations

import os
from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.monitoring.alerts import Alert, Channel, Delivery, send_alert, webhook_url
from mlops_assets.lib.monitoring.settings import SlackSettings

SLACK = "slack"


def alert_log_path() -> Path:
    """MLOPS_HOME/alerts/alerts.jsonl: every alert of this home, one JSON object per line."""
    return settings.mlops_home() / "alerts" / "alerts.jsonl"


def slack_channel(slack: SlackSettings, token: str, timeout_s: float) -> Channel:
    """A poster of alerts to `slack.channel` with dagster-slack's client ('' when Slack took it, else why not)."""
    from dagster_slack import SlackResource
    from slack_sdk.errors import SlackApiError, SlackClientError

    def post(alert: Alert) -> str:
        client = SlackResource(token=token).get_client()
        # The resource has no setting for these; the client it returns has.
        client.base_url, client.timeout = slack.api_url, int(max(timeout_s, 1))
        try:
            client.chat_postMessage(channel=slack.channel, text=alert.payload()["text"])
        except SlackApiError as error:
            return f"Slack refused the alert for {slack.channel}: {error.response.get('error', error)}"
        except (SlackClientError, OSError) as error:
            return f"Slack unreachable at {slack.api_url} ({type(error).__name__}: {error}); the alert is in the log"
        return ""

    return post


def channels(environment: str) -> dict[str, Channel]:
    """The extra channels configured for `environment`: Slack when `monitoring.alerts.slack` is set and its token
    variable holds a token."""
    configured = settings.environment_settings(environment).monitoring.alerts
    slack = configured.slack
    token = os.environ.get(slack.token_env, "").strip() if slack is not None else ""
    return {SLACK: slack_channel(slack, token, configured.webhook_timeout_s)} if token else {}


def send(alert: Alert) -> Delivery:
    """Send `alert` through the channels of its environment's file (deployments/<environment>.yaml)."""
    configured = settings.environment_settings(alert.environment).monitoring.alerts
    return send_alert(
        alert,
        alert_log_path(),
        webhook_url(configured.webhook_url_env),
        configured.webhook_timeout_s,
        channels=channels(alert.environment),
    )

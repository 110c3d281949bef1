"""Alert channels and kinds: Slack through dagster-slack (against a loopback receiver), failed deployments, events
delivered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_assets.defs.monitoring import alerting
from mlops_assets.lib.monitoring.alerts import DEPLOYMENT_FAILED, Alert, read_alerts, send_alert
from mlops_assets.lib.monitoring.settings import AlertSettings, MonitoringSettings, SlackSettings
from mlops_assets_tests.monitoring_fixtures import webhook_receiver


def _with_slack(monkeypatch: pytest.MonkeyPatch, api_url: str) -> None:
    """The local environment's settings with Slack configured at `api_url` and a token in MLOPS_SLACK_TOKEN."""
    from mlops_assets import settings

    real = settings.environment_settings("local")
    slack = SlackSettings(channel="#ml-alerts", api_url=api_url)
    changed = real.model_copy(
        update={"monitoring": real.monitoring.model_copy(update={"alerts": AlertSettings(slack=slack)})}
    )
    monkeypatch.setattr(settings, "environment_settings", lambda environment=None: changed)
    monkeypatch.setenv("MLOPS_SLACK_TOKEN", "xoxb-test-token")
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)


def test_an_alert_is_posted_to_slack_through_dagster_slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    with webhook_receiver(reply={"ok": True, "channel": "C1", "ts": "1.0"}) as slack:
        _with_slack(monkeypatch, slack.url.removesuffix("alerts"))
        delivery = alerting.send(Alert(DEPLOYMENT_FAILED, "Deployment of version 3 to staging failed", "local"))
    assert (delivery.error, delivery.channels) == ("", ("slack",))
    assert slack.paths == ["/chat.postMessage"]
    assert slack.received == [{"channel": "#ml-alerts", "text": "[local] Deployment of version 3 to staging failed"}]
    [logged] = read_alerts(tmp_path / "home" / "alerts" / "alerts.jsonl")
    assert (logged["kind"], logged["channels"], logged["delivery_error"]) == ("deployment failed", ["slack"], "")


def test_a_slack_refusal_is_recorded_with_slacks_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    with webhook_receiver(reply={"ok": False, "error": "channel_not_found"}) as slack:
        _with_slack(monkeypatch, slack.url.removesuffix("alerts"))
        delivery = alerting.send(Alert(DEPLOYMENT_FAILED, "Deployment failed", "local"))
    assert delivery.error == "slack: Slack refused the alert for #ml-alerts: channel_not_found"
    assert delivery.channels == ()
    [logged] = read_alerts(tmp_path / "home" / "alerts" / "alerts.jsonl")
    assert logged["delivery_error"] == delivery.error


def test_without_a_slack_token_no_slack_channel_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_slack(monkeypatch, "http://127.0.0.1:9/")
    monkeypatch.delenv("MLOPS_SLACK_TOKEN")
    assert alerting.channels("local") == {}


def test_send_alert_keeps_its_positional_signature_for_deployment_failures(tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    with webhook_receiver() as receiver:
        alert = Alert(DEPLOYMENT_FAILED, "Rollout of version 4 failed: readiness timed out", "staging", {"version": 4})
        delivery = send_alert(alert, log, receiver.url, 5.0)
    assert (delivery.delivered, delivery.webhook, delivery.duplicate) == (True, receiver.url, False)
    assert receiver.received[0]["kind"] == "deployment failed"
    assert receiver.received[0]["details"] == {"version": 4}


def test_an_event_already_delivered_is_not_sent_again(tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    with webhook_receiver() as receiver:
        alert = Alert(DEPLOYMENT_FAILED, "Rollout failed", "staging", event_id="deploy-staging-v4")
        first = send_alert(alert, log, receiver.url)
        again = send_alert(alert, log, receiver.url)
    assert (first.duplicate, again.duplicate, again.error) == (False, True, "")
    assert len(receiver.received) == 1
    assert [a["event_id"] for a in read_alerts(log)] == ["deploy-staging-v4"]


def test_slack_settings_are_checked(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="channel"):
        MonitoringSettings.model_validate({"alerts": {"slack": {"channel": ""}}})
    with pytest.raises(ValidationError, match="api_url"):
        MonitoringSettings.model_validate({"alerts": {"slack": {"channel": "#a", "api_url": "slack.com"}}})

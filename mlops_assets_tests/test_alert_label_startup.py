"""A bento whose alert labels the model lacks (built before the packaging check, or by hand) refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_assets.packaging import build_service_bento
from mlops_assets.resources.local_deployer import DeploymentError
from mlops_assets_tests.service_fixtures import API_KEY_ENV, ServedBento, serve_in_own_home


def test_a_service_with_an_alert_label_its_model_lacks_refuses_to_start(
    served_bento: ServedBento, tmp_path: Path
) -> None:
    serving = {"max_batch_size": 16, "api_key_env": API_KEY_ENV, "capture": {"alert_labels": {"drone": 0.8}}}
    artifact, _ = build_service_bento(served_bento.model_tag, labels={"purpose": "alert-label-test"}, serving=serving)
    with pytest.raises(DeploymentError) as caught:
        serve_in_own_home(artifact.bento_tag, tmp_path / "home")
    # The service's own words, as soon as it refused (lib/deploy/startup_refusal.py), not the ready timeout's
    # message with a traceback in its log tail.
    assert str(caught.value) == (
        "The service cannot start: monitoring.capture.alert_labels names 'drone', not a label of the model (labels: "
        "0, 1, 2, 3, 4, 5, 6, 7, 8, 9); correct the setting in the environment file, and build the bento again. "
        f"The server for {artifact.bento_tag} refused to start; its log: {tmp_path / 'home' / 'logs' / 'server.log'}"
    )

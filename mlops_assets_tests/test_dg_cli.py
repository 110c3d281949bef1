"""Dagster's current command line on the project: `dg check defs` and `dg list defs` load the code location that
[tool.dg] in pyproject.toml names, with the groups, owners, kinds and tags the UI shows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets import settings

DG = str(Path(sys.executable).parent / "dg")


def _dg(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_HOME": str(home)}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV"):
        env.pop(key, None)
    return subprocess.run([DG, *args], cwd=settings.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_dg_check_defs_loads_the_code_location(tmp_path: Path) -> None:
    checked = _dg(tmp_path, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully." in checked.stdout + checked.stderr
    # The project's .venv runs dg without being activated: no mismatch warning for that.
    assert "does not match the virtual environment" not in checked.stderr


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    result = _dg(tmp_path_factory.mktemp("dg_home"), "list", "defs", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_dg_list_defs_shows_each_asset_in_its_group_with_owners_kinds_and_tags(listed: dict) -> None:
    assets = {asset["asset_key"]: asset for asset in listed["assets"]}
    chain = ("raw_images", "validated_images", "trained_model", "model_evaluation", "bento", "model_promotion")
    assert {key: assets[key]["group_name"] for key in chain} == {
        "raw_images": "data",
        "validated_images": "data",
        "trained_model": "model",
        "model_evaluation": "model",
        "bento": "deployment",
        "model_promotion": "deployment",
    }
    trained = assets["trained_model"]
    assert (trained["owners"], trained["kinds"]) == ([{"team": "ml"}], ["pytorch"])
    assert trained["tags"] == [
        {"key": "model", "value": "image-classifier"},
        {"key": "project", "value": "mlops-assets"},
        {"key": "stage", "value": "model"},
    ]
    assert trained["description"] == (
        "The model plug-in trained with fixed seeds on the training split, with per-epoch history."
    )
    # Every asset of the project has a description, an owner, a kind and the project's tag.
    for key, asset in assets.items():
        assert asset["description"] and asset["owners"] and asset["kinds"], key
        assert {"key": "project", "value": "mlops-assets"} in asset["tags"], key


def test_the_automation_sensor_is_listed_beside_the_other_sensors(listed: dict) -> None:
    assert {"automation_sensor", "raw_data_sensor"} <= {sensor["name"] for sensor in listed["sensors"]}

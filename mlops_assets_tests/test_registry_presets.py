"""The registry jobs open in the launchpad with the version they most likely act on, read from the registry."""

from pathlib import Path

import pytest

from mlops_assets.definitions import build_definitions
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.registry_helpers import registered


def _presets(defs) -> dict[str, dict | None]:
    jobs = ("promote_model_job", "rollback_model_job", "disable_model_job", "enable_model_job")
    configs = {}
    for name in jobs:
        config = defs.resolve_job_def(name).run_config
        configs[name] = next(iter(config["ops"].values()))["config"] if config else None
    return configs


def test_a_registry_without_versions_presets_only_the_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_REGISTRY_URL", f"sqlite:///{tmp_path}/registry.db")
    assert _presets(build_definitions()) == {
        "promote_model_job": None,
        "rollback_model_job": {"to_version": 0, "reason": ""},
        "disable_model_job": None,
        "enable_model_job": None,
    }


def test_presets_name_the_staging_the_newest_and_the_disabled_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", url)
    with ModelRegistry(url, "local") as models:
        one, two, three, four = (registered(models, index) for index in (1, 2, 3, 4))
        models.promote(one, "production", "test", "")
        models.promote(two, "staging", "test", "")
        models.disable(four, "test", "broken input handling")
    assert _presets(build_definitions()) == {
        "promote_model_job": {"version": two, "to": "production", "reason": "", "force": False},
        "rollback_model_job": {"to_version": 0, "reason": ""},
        "disable_model_job": {"version": three, "reason": ""},
        "enable_model_job": {"version": four, "reason": ""},
    }

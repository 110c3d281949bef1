"""Code versions derived from source, and the derived data versions and cache keys assets use."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.code_fingerprint import CodeFingerprint, fingerprint
from mlops_assets.lib.models.plugins import BUILTIN_PLUGINS

CODE_VERSION_INPUTS_KEY = "code_version_inputs"

# Per asset: the modules whose code determines its output. Metadata-only helpers (plots) are left out so that
# restyling a chart does not retrain a model.
_SERVING_LIBRARY = [
    "mlops_assets.lib.data.preprocessing",
    "mlops_assets.lib.data.image_policy",
    "mlops_assets.lib.data.image_conversion",
    "mlops_assets.lib.models.model_package",
    "mlops_assets.lib.models.plugins",
    "mlops_assets.lib.errors",
]
ASSET_SOURCES: dict[str, list[str]] = {
    "raw_images": [
        "mlops_assets.defs.ingest.assets",
        "mlops_assets.lib.data.manifest",
        "mlops_assets.lib.data.dataset_files",
        "mlops_assets.lib.data.splits",
    ],
    "validated_images": [
        "mlops_assets.defs.validation.assets",
        "mlops_assets.lib.data.validated_data",
        "mlops_assets.lib.data.data_validation",
        "mlops_assets.lib.data.expectation_profiles",
        "mlops_assets.lib.data.baseline",
        "mlops_assets.lib.data.preprocessing",
        "mlops_assets.lib.data.image_policy",
        "mlops_assets.lib.data.image_conversion",
        "mlops_assets.lib.data.image_stats",
        "mlops_assets.lib.data.splits",
    ],
    "trained_model": [
        "mlops_assets.defs.training.assets",
        "mlops_assets.lib.models.training",
        "mlops_assets.lib.models.plugins.base",
        "mlops_assets.lib.models.model_package",
        "mlops_assets.lib.data.preprocessing",
        "mlops_assets.lib.data.image_policy",
    ],
    "model_evaluation": [
        "mlops_assets.defs.evaluation.assets",
        "mlops_assets.lib.models.evaluation",
        "mlops_assets.lib.models.metrics",
        "mlops_assets.lib.models.model_package",
    ],
    "bento": ["mlops_assets.defs.packaging.assets", "mlops_assets.packaging", *_SERVING_LIBRARY],
    "model_promotion": [
        "mlops_assets.defs.promotion.assets",
        "mlops_assets.lib.registry.registry",
        "mlops_assets.lib.registry.policy",
    ],
    "monitoring_baseline": [
        "mlops_assets.defs.monitoring.assets",
        "mlops_assets.lib.monitoring.baseline",
        "mlops_assets.lib.data.image_stats",
        "mlops_assets.lib.models.model_package",
    ],
    "prediction_monitoring": [
        "mlops_assets.defs.monitoring.assets",
        "mlops_assets.lib.monitoring.monitor",
        "mlops_assets.lib.monitoring.drift",
        "mlops_assets.lib.monitoring.logs",
        "mlops_assets.lib.monitoring.verdicts",
        "mlops_assets.lib.monitoring.service_metrics",
    ],
    # What a deployment does (the registry and the live servers decide what it serves; this is only its code).
    "deployment_staging": ["mlops_assets.defs.deployment.assets", "mlops_assets.deploy_release"],
    "deployment_production": ["mlops_assets.defs.deployment.assets", "mlops_assets.deploy_release"],
}


def _asset_files(asset_name: str) -> dict[str, Path]:
    """Non-module inputs: the service ships inside the bento rather than as an installed module, and the
    expectation profiles decide what is quarantined."""
    if asset_name == "bento":
        return {
            "bento/service.py": settings.PROJECT_ROOT / "bento" / "service.py",
            "bento/bentofile.yaml": settings.PROJECT_ROOT / "bento" / "bentofile.yaml",
            "bento/bentofile.cloud_run.yaml": settings.PROJECT_ROOT / "bento" / "bentofile.cloud_run.yaml",
        }
    if asset_name == "validated_images":
        profiles = settings.PROJECT_ROOT / "mlops_assets" / "expectations"
        return {f"expectations/{path.name}": path for path in sorted(profiles.glob("*.yaml"))}
    return {}


def asset_fingerprint(asset_name: str, config_defaults: dict | None = None) -> CodeFingerprint:
    modules = list(ASSET_SOURCES[asset_name])
    plugin = (config_defaults or {}).get("plugin")
    if plugin in BUILTIN_PLUGINS:
        # The default plug-in's training loop is part of what trains the model.
        modules.append(BUILTIN_PLUGINS[plugin].partition(":")[0])
    return fingerprint(modules, _asset_files(asset_name), config_defaults)


def with_derived_code_versions(
    assets: Sequence[dg.AssetsDefinition], config_defaults: dict[str, dict]
) -> list[dg.AssetsDefinition]:
    """Stamp each asset with the code version of its sources and show the hash inputs in its definition."""

    def stamp(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        code = asset_fingerprint(name, config_defaults.get(name))
        return spec.replace_attributes(
            code_version=code.version,
            metadata={**spec.metadata, CODE_VERSION_INPUTS_KEY: dg.MetadataValue.json(code.inputs)},
        )

    return [asset.map_asset_specs(stamp) for asset in assets]


def own_code_version(context: dg.AssetExecutionContext) -> str:
    return context.assets_def.code_versions_by_key[context.asset_key] or ""


def code_version_metadata(context: dg.AssetExecutionContext, cache_hit: bool, cache_key: str) -> dict:
    """What a person needs to see why an asset was (not) recomputed."""
    spec_metadata = context.assets_def.specs_by_key[context.asset_key].metadata
    return {
        "code_version": own_code_version(context),
        CODE_VERSION_INPUTS_KEY: spec_metadata.get(CODE_VERSION_INPUTS_KEY, dg.MetadataValue.json({})),
        "cache_hit": cache_hit,
        "cache_key": cache_key,
    }

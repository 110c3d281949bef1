"""The Dagster code location: loads every stage's definitions and binds the environment's resources."""

from dataclasses import asdict

import dagster as dg

from mlops_assets.defs.automation import automation_sensor
from mlops_assets.defs.console_logger import console_logger
from mlops_assets.defs.deployment.assets import deployment_assets
from mlops_assets.defs.deployment.checks import DEPLOYMENT_CHECKS
from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import build_raw_images, raw_images, raw_images_config_for
from mlops_assets.defs.ingest.sensors import raw_data_sensor
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.monitoring.assets import monitoring_baseline, prediction_monitoring
from mlops_assets.defs.monitoring.jobs import prediction_monitoring_job
from mlops_assets.defs.monitoring.schedules import monitoring_schedules
from mlops_assets.defs.monitoring.sensors import alert_label_sensor, drift_sensor, run_failure_alert_sensor
from mlops_assets.defs.packaging.assets import BentoConfig, bento
from mlops_assets.defs.promotion.assets import model_promotion
from mlops_assets.defs.promotion.checks import promotion_gate
from mlops_assets.defs.promotion.jobs import registry_jobs
from mlops_assets.defs.promotion.presets import read_presets
from mlops_assets.defs.training.assets import TrainingConfig, build_trained_model, trained_model, training_config_for
from mlops_assets.defs.user_errors import with_user_error_messages
from mlops_assets.defs.validation.assets import ValidatedImagesConfig, validated_images
from mlops_assets.defs.validation.checks import validated_images_quality
from mlops_assets.defs.versioning import with_derived_code_versions
from mlops_assets.environments import get_environment, resources_for
from mlops_assets.lib.models.plugins import available_plugins, import_paths_allowed
from mlops_assets.lib.registry.policy import load_policy
from mlops_assets.packaging import serving_arguments
from mlops_assets.settings import environment_file


def promotion_settings(environment: str) -> dict:
    return asdict(load_policy(environment_file(environment)))


def config_defaults() -> dict[str, dict]:
    """Config that determines an output is part of its code version (serving settings are baked into bentos)."""
    return {
        "validated_images": ValidatedImagesConfig().model_dump(),
        "trained_model": TrainingConfig().model_dump(),
        "bento": {**BentoConfig().model_dump(), "serving": serving_arguments()},
        "model_promotion": {"promotion": promotion_settings(get_environment())},
    }


def launchable_trained_model() -> dg.AssetsDefinition:
    """trained_model whose `plugin` is an enumeration of the built-in and installed plug-ins, read now; free text
    only where the operator allows import paths (MLOPS_ALLOW_PLUGIN_IMPORT_PATHS)."""
    if import_paths_allowed():
        return trained_model
    return build_trained_model(training_config_for(sorted(available_plugins())))


def launchable_raw_images() -> dg.AssetsDefinition:
    """raw_images whose `dataset` is an enumeration of the catalogue's datasets (with their sources and latest
    versions in its description), read now; free text when the catalogue cannot be read."""
    from mlops_assets.dataset_runs import catalogue_for_launchpad

    found = catalogue_for_launchpad()
    return raw_images if found is None else build_raw_images(raw_images_config_for(*found))


def versioned_assets() -> list[dg.AssetsDefinition]:
    """The asset chain with code versions derived from its source (read from disk, so built on demand)."""
    assets = [
        launchable_raw_images(),
        validated_images,
        launchable_trained_model(),
        model_evaluation,
        bento,
        model_promotion,
        monitoring_baseline,
    ]
    return with_derived_code_versions(assets, config_defaults())


def build_definitions(environment: str | None = None) -> dg.Definitions:
    environment = environment or get_environment()
    return dg.Definitions(
        # Each asset's user error is one ERROR line in the run's log, however the run was launched.
        assets=with_user_error_messages(
            [
                *versioned_assets(),
                *with_derived_code_versions([prediction_monitoring], config_defaults()),
                *with_derived_code_versions(deployment_assets(environment), config_defaults()),
            ]
        ),
        asset_checks=[validated_images_quality, promotion_gate, *DEPLOYMENT_CHECKS],
        # The registry jobs open in the launchpad with the versions they most likely act on, read now.
        jobs=[training_pipeline_job, *registry_jobs(read_presets()), prediction_monitoring_job],
        sensors=[automation_sensor, raw_data_sensor, drift_sensor, run_failure_alert_sensor, alert_label_sensor],
        schedules=monitoring_schedules(environment),
        resources=resources_for(environment),
        # Every job runs its steps in the run's own process: one torch import per run, not one per step.
        executor=dg.in_process_executor,
        # Dagster's console logger, without the stack trace of a user error (the event log keeps it).
        loggers={"console": console_logger},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded lazily by Dagster when the code location starts, not at import."""
    from mlops_assets.housekeeping import at_code_location_load

    # A code location (re)starting is a start: runs whose process died are failed, leftovers removed.
    at_code_location_load()
    return build_definitions()

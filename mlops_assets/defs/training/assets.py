"""Training: fit the configured model plug-in on the validated training split."""

import dagster as dg

from mlops_assets.defs.metadata import markdown_table, png_markdown
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.models.model_package import PACKAGE_FILE
from mlops_assets.lib.models.plots import training_curves_png
from mlops_assets.lib.models.plugins.base import EpochRecord, TrainSettings
from mlops_assets.lib.models.training import TrainedModel, load_trained_model, train_model
from mlops_assets.resources.artifacts import LocalArtifactStore


class TrainingConfig(dg.Config):
    """Hyper-parameters; `plugin` names the model plug-in, `plugin_params` its own knobs."""

    plugin: str = "cnn"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    device: str = "auto"
    plugin_params: dict[str, float] = {}


@dg.asset(
    group_name="training",
    kinds={"pytorch"},
    automation_condition=(dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed())
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    validated_images: ValidatedDataset,
    artifacts: LocalArtifactStore,
) -> dg.Output[TrainedModel]:
    """The model plug-in trained with fixed seeds on the training split, with per-epoch history."""
    settings = TrainSettings(config.epochs, config.batch_size, config.learning_rate, config.seed, config.device)
    version = derived_version(validated_images.version, own_code_version(context), config.model_dump())
    destination = artifacts.path_for("trained_model", version)
    cache_hit = (destination / PACKAGE_FILE).exists()

    def log_epoch(record: EpochRecord) -> None:
        context.log.info(
            f"epoch {record.epoch}/{settings.epochs}: loss {record.train_loss:.4f}, "
            f"val_loss {record.val_loss:.4f}, val_accuracy {record.val_accuracy:.4f}"
        )

    if cache_hit:
        model = load_trained_model(destination)
        context.log.info(f"Cache hit: reusing model package {destination} (weights {model.weights_sha256[:12]})")
    else:
        model = train_model(
            validated_images, config.plugin, config.plugin_params, settings, destination, log_epoch, version
        )
    history = model.history
    return dg.Output(
        model,
        data_version=dg.DataVersion(version),
        metadata={
            **code_version_metadata(context, cache_hit, version),
            "final_val_accuracy": history[-1]["val_accuracy"],
            "final_train_loss": history[-1]["train_loss"],
            "plugin": model.plugin,
            "device": model.device,
            "training_seconds": round(model.training_seconds, 2),
            "weights_sha256": model.weights_sha256,
            "hyperparameters": dg.MetadataValue.json({**model.settings, "plugin_params": model.params}),
            "training_curves": png_markdown(training_curves_png(history), "training curves"),
            "epochs": markdown_table(
                ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"],
                [
                    [r["epoch"], r["train_loss"], r["train_accuracy"], r["val_loss"], r["val_accuracy"], r["seconds"]]
                    for r in history
                ],
            ),
            "package_path": dg.MetadataValue.path(model.directory),
        },
    )

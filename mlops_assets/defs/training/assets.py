"""Training: fit the configured model plug-in on the validated training split."""

from collections.abc import Sequence
from typing import Literal

import dagster as dg
import pydantic

from mlops_assets.defs.groups import MODEL, presentation
from mlops_assets.defs.metadata import home_path, png_markdown, table
from mlops_assets.defs.pictures import training_curves_thumbnail
from mlops_assets.defs.training.data_parallel import train_data_parallel
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.distributed import DataParallelJob
from mlops_assets.lib.models.model_package import PACKAGE_FILE
from mlops_assets.lib.models.plots import training_curves_png
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.models.plugins.base import EpochRecord, TrainSettings
from mlops_assets.lib.models.training import TrainedModel, epoch_summary, load_trained_model, train_model
from mlops_assets.resources.artifacts import ArtifactStore

# Processes on one machine: beyond a machine's GPUs (8 at most on one node) or cores, more only compete.
MAX_PROCESSES = 64
DEVICES = Literal["auto", "cpu", "cuda", "mps", *(f"cuda:{index}" for index in range(8))]


class TrainingConfig(dg.Config):
    """Hyper-parameters; `plugin` names the model plug-in, `plugin_params` its own knobs."""

    # Free text only where the operator allows import paths; the code location otherwise binds an enumeration
    # (`training_config_for`).
    plugin: str = pydantic.Field(
        default="cnn", description="A built-in or installed model plug-in (an import path only where allowed)."
    )
    # Bounds are checked before a CLI run starts (config_checks) and when a step starts; the launchpad shows the
    # descriptions.
    epochs: int = pydantic.Field(default=20, ge=1, description="Passes over the training split: an integer >= 1.")
    batch_size: int = pydantic.Field(
        default=64, ge=1, description="Images per training step (over all processes): an integer >= 1."
    )
    learning_rate: float = pydantic.Field(
        default=1e-3, gt=0, allow_inf_nan=False, description="Optimizer step size: a number > 0."
    )
    seed: int = pydantic.Field(
        default=0, ge=0, le=2**32 - 1, description="Seed of every random choice: an integer from 0 to 4294967295."
    )
    # An enumeration on the launchpad; one GPU by index up to the 8 a node holds.
    device: DEVICES = pydantic.Field(
        default="auto",
        description="Where to train: 'auto' (CUDA when present, else the CPU), 'cpu', 'cuda', 'cuda:<index>' (one GPU) "
        "or 'mps' (Apple silicon).",
        json_schema_extra={"allowed": "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"},
    )
    plugin_params: dict[str, float] = pydantic.Field(
        default={},
        description="The plug-in's own settings by name (numbers), e.g. {'hidden': 64}; `mlops plugins` lists them.",
    )
    processes: int = pydantic.Field(
        default=1,
        ge=1,
        le=MAX_PROCESSES,
        description=(
            "Training processes on this machine: 1 trains in the step's own process; more train data-parallel "
            "(torch DDP launched by torchrun: gloo between CPU processes, NCCL with one GPU each), each on its share "
            f"of every batch of batch_size images. An integer from 1 to {MAX_PROCESSES}."
        ),
    )

    @pydantic.field_validator("processes")
    @classmethod
    def check_data_parallel(cls, processes: int, info: pydantic.ValidationInfo) -> int:
        """More than one process needs a plug-in that trains data-parallel, a device processes can share and at
        least one image per process in every batch."""
        if processes > 1:
            problem = data_parallel_problem(processes, info.data)
            if problem:
                raise ValueError(problem)
        return processes


def data_parallel_problem(processes: int, settings: dict) -> str:
    """Why `processes` > 1 cannot train with these other settings ('' when they can); a setting already refused
    (absent from `settings`) is not judged here."""
    plugin, device, batch_size = settings.get("plugin"), settings.get("device"), settings.get("batch_size")
    if device is not None and (device == "mps" or device.startswith("cuda:")):
        return (
            f"device {device!r} cannot be shared by processes; set device to 'auto', 'cuda' (one GPU per process) or "
            "'cpu', or processes to 1"
        )
    if batch_size is not None and processes > batch_size:
        return (
            f"each process trains on a share of every batch of batch_size = {batch_size} images; use at most "
            f"{batch_size} processes"
        )
    if plugin is not None:
        try:
            plugin_class = resolve_plugin(plugin)
        except PluginError:
            return ""  # the plugin setting itself is refused, with its own message
        if not plugin_class.data_parallel:
            return f"model plug-in {plugin!r} trains in one process only; set processes to 1"
    return ""


def training_config_for(plugins: Sequence[str]) -> type[TrainingConfig]:
    """TrainingConfig whose `plugin` must be one of `plugins`: the launchpad offers them as an enumeration and any
    other value is a config error at launch."""
    default = TrainingConfig.model_fields["plugin"]
    return pydantic.create_model(
        TrainingConfig.__name__,
        __base__=TrainingConfig,
        __module__=__name__,
        plugin=(Literal[tuple(plugins)], pydantic.Field(default=default.default, description=default.description)),
    )


def build_trained_model(config_class: type[TrainingConfig] = TrainingConfig) -> dg.AssetsDefinition:
    """The trained_model asset configured by `config_class` (TrainingConfig or one from `training_config_for`)."""

    @dg.asset(
        name="trained_model",
        **presentation(MODEL),
        kinds={"pytorch"},
        automation_condition=(dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed())
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: config_class,
        validated_images: ValidatedDataset,
        artifacts: ArtifactStore,
    ) -> dg.Output[TrainedModel]:
        """The model plug-in trained with fixed seeds on the training split, with per-epoch history."""
        return train_and_describe(context, config, validated_images, artifacts)

    return trained_model


def train_and_describe(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    validated_images: ValidatedDataset,
    artifacts: ArtifactStore,
) -> dg.Output[TrainedModel]:
    """Train (or reuse the stored package for this version) and describe the model in the output's metadata."""
    # Before anything is read: a plug-in outside the allowed set is refused without importing it.
    resolve_plugin(config.plugin)
    settings = TrainSettings(config.epochs, config.batch_size, config.learning_rate, config.seed, config.device)
    version = derived_version(validated_images.version, own_code_version(context), config.model_dump())
    stored = artifacts.fetch("trained_model", version)
    cache_hit = stored is not None and (stored / PACKAGE_FILE).exists()

    def log_epoch(record: EpochRecord) -> None:
        context.log.info(epoch_summary(record, settings.epochs))

    if cache_hit:
        model = load_trained_model(stored)
        context.log.info(
            f"Cache hit: reusing model package {artifacts.uri('trained_model', version)} "
            f"(weights {model.weights_sha256[:12]})"
        )
    else:
        # The arrays are read locally; the step may run where validated_images did not (another run or machine).
        validated_images = artifacts.local_copy(validated_images, "validated_images")
        with artifacts.publishing("trained_model", version) as destination:
            if config.processes > 1:
                # torchrun's workers train; rank 0 streams the epochs to this run's log and writes the package.
                job = DataParallelJob.create(
                    validated_images,
                    config.plugin,
                    config.plugin_params,
                    settings,
                    config.processes,
                    destination,
                    version,
                )
                model = train_data_parallel(context, job)
            else:
                model = train_model(
                    validated_images, config.plugin, config.plugin_params, settings, destination, log_epoch, version
                )
    history = model.history
    last = history[-1]
    return dg.Output(
        model,
        data_version=dg.DataVersion(version),
        metadata={
            # Metrics first: numbers Dagster plots across materializations (the asset's "Plots" tab).
            "final_val_accuracy": round(last["val_accuracy"], 4),
            "final_val_loss": round(last["val_loss"], 4),
            "final_train_accuracy": round(last["train_accuracy"], 4),
            "final_train_loss": round(last["train_loss"], 4),
            "best_val_accuracy": round(max(record["val_accuracy"] for record in history), 4),
            "num_epochs": len(history),
            "training_seconds": round(model.training_seconds, 2),
            "training_curves": training_curves_thumbnail(history),
            "epochs": table(history, EPOCH_COLUMNS),
            "training_curves_plot": png_markdown(training_curves_png(history), "training curves"),
            "plugin": model.plugin,
            "device": model.device,
            # Older packages did not record it: they were trained in one process.
            "processes": model.settings.get("processes", 1),
            "hyperparameters": dg.MetadataValue.json({**model.settings, "plugin_params": model.params}),
            "weights_sha256": model.weights_sha256,
            "package_path": home_path(model.directory),
            "stored_at": home_path(artifacts.uri("trained_model", version)),
            **code_version_metadata(context, cache_hit, version),
        },
    )


EPOCH_COLUMNS = {
    "epoch": "Pass over the training split, from 1",
    "train_loss": "Mean cross-entropy on the training split",
    "train_accuracy": "Share of training images classified right (0 to 1)",
    "val_loss": "Mean cross-entropy on the validation split",
    "val_accuracy": "Share of validation images classified right (0 to 1)",
    "seconds": "Wall-clock seconds of the epoch",
}


# The asset with `plugin` as free text, for code that binds its own resources (tests, notebooks).
trained_model = build_trained_model()

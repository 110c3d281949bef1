"""Ingest: the chosen dataset becomes a manifest with a content-derived data version, its files kept in the dataset
store so the version can be trained on again whatever happens to its source."""

from collections.abc import Sequence
from typing import Literal

import dagster as dg
import pydantic

from mlops_assets.dataset_choice import DatasetChoice, ResolvedDataset, reader, resolve
from mlops_assets.defs.groups import DATA, presentation
from mlops_assets.defs.metadata import home_path, table
from mlops_assets.defs.versioning import code_version_metadata
from mlops_assets.lib.data.manifest import DatasetManifest
from mlops_assets.lib.registry.datasets import CURRENT, VERSION_RULE, CurrentChoice, DatasetVersionView, DatasetView
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.dataset_store import DatasetStore
from mlops_assets.resources.registry import ModelRegistryResource


class RawImagesConfig(dg.Config):
    """Which dataset to read: a catalogue dataset by name (optionally one recorded version), or a folder."""

    # Free text where the catalogue cannot be read when the code location loads; otherwise an enumeration of the
    # catalogue's datasets (`raw_images_config_for`).
    dataset: str = pydantic.Field(
        default=CURRENT,
        min_length=1,
        description="A dataset of the catalogue (`mlops datasets list`), or 'current': the project's current dataset.",
    )
    version: str = pydantic.Field(
        default="",
        description=f"Empty: the dataset as its source holds it now. Otherwise {VERSION_RULE}: exactly that "
        "recorded version, from the dataset store, even after its source changed.",
    )
    path: str = pydantic.Field(
        default="",
        description="A folder (or gs://bucket/prefix where the environment reads GCS) to read instead of a catalogue "
        "dataset, for a quick run; leave `dataset` at 'current'.",
    )


def _describe(view: DatasetView) -> str:
    if view.latest is None:
        return f"{view.name}: {view.source}, no version recorded yet"
    latest = view.latest
    return (
        f"{view.name}: {view.source}, latest version {latest.number} (data version {latest.data_version[:12]}, "
        f"{latest.num_images:,} images, {latest.num_classes} classes)"
    )


def raw_images_config_for(datasets: Sequence[DatasetView], current: CurrentChoice | None) -> type[RawImagesConfig]:
    """RawImagesConfig whose `dataset` is one of the catalogue's `datasets` or 'current': the launchpad offers them as
    an enumeration, each described, and any other name is a config error at launch."""
    names = (CURRENT, *(view.name for view in datasets))
    now = f"now {current}" if current is not None else "none chosen yet: the sample"
    listing = "; ".join(_describe(view) for view in datasets)
    description = (
        f"Which dataset to read. 'current': the project's current dataset, set by `mlops run --dataset NAME` ({now}). "
        f"The catalogue: {listing}. Reload the code location to see datasets added since it loaded."
    )
    return pydantic.create_model(
        RawImagesConfig.__name__,
        __base__=RawImagesConfig,
        __module__=__name__,
        dataset=(Literal[names], pydantic.Field(default=CURRENT, description=description)),
    )


def build_raw_images(config_class: type[RawImagesConfig] = RawImagesConfig) -> dg.AssetsDefinition:
    """The raw_images asset configured by `config_class` (RawImagesConfig or one from `raw_images_config_for`)."""

    @dg.asset(name="raw_images", **presentation(DATA), kinds={"python", "file"})
    def raw_images(
        context: dg.AssetExecutionContext,
        config: config_class,
        dataset: DatasetSource,
        dataset_store: DatasetStore,
        registry: ModelRegistryResource,
    ) -> dg.Output[DatasetManifest]:
        """Manifest of the chosen dataset (path, label, size, hash), kept in the dataset store; its hash versions it."""
        return ingest(context, DatasetChoice.from_config(config), dataset, dataset_store, registry)

    return raw_images


def ingest(
    context: dg.AssetExecutionContext,
    choice: DatasetChoice,
    dataset: DatasetSource,
    dataset_store: DatasetStore,
    registry: ModelRegistryResource,
) -> dg.Output[DatasetManifest]:
    """Read the chosen dataset (a pinned version from the store, checked whole; anything else scanned from its source
    and kept in the store), record a catalogue dataset's version, and describe it in the output's metadata. Raises
    CatalogError, DatasetError or StoreError naming what is unknown, missing or corrupt; the catalogue is changed
    only once the files are kept."""
    with registry.open() as models:
        resolved = resolve(choice, models.datasets, dataset)
    context.log.info(f"Dataset: {resolved}, chosen by {resolved.chosen_by}")
    if resolved.pinned is not None:
        manifest = dataset_store.manifest(resolved.pinned.data_version)
        # Every file read back and checked against its hash before anything trains on it.
        dataset_store.local_root(manifest, verify=True)
        added = {"blobs_added": 0, "bytes_added": 0}
        version = resolved.pinned
    else:
        source = reader(dataset, resolved.source)
        manifest = source.scan()
        kept = dataset_store.keep(manifest, source.local_root(manifest))
        added = {"blobs_added": kept.blobs_added, "bytes_added": kept.bytes_added}
        context.log.info(
            f"Kept in the dataset store: {kept.blobs_added} new file(s), {kept.bytes_added:,} bytes "
            f"({kept.blobs_total} distinct contents in this version)"
        )
        version = None
        if resolved.name is not None:
            with registry.open() as models:
                version, created = models.datasets.record_version(
                    resolved.name,
                    resolved.source,
                    manifest.data_version,
                    len(manifest.entries),
                    manifest.class_counts(),
                    sum(entry.size for entry in manifest.entries),
                    f"dagster run {context.run.run_id}",
                )
            context.log.info(f"{'Recorded' if created else 'Already recorded as'} {version.reference}")
    return describe(context, manifest, resolved, version, added, dataset_store.uri())


def describe(
    context: dg.AssetExecutionContext,
    manifest: DatasetManifest,
    resolved: ResolvedDataset,
    version: DatasetVersionView | None,
    added: dict[str, int],
    store_uri: str,
) -> dg.Output[DatasetManifest]:
    """The manifest as raw_images' output, with the dataset's lineage (name, source, version) and counts."""
    counts = manifest.class_counts()
    if manifest.skipped:
        first = manifest.skipped[0]
        context.log.warning(f"{len(manifest.skipped)} entries skipped as not images, e.g. {first.path}: {first.reason}")
    if manifest.empty_labels:
        context.log.warning(f"Label folders without an image file: {list(manifest.empty_labels)}")
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(manifest.data_version),
        metadata={
            # Counts first (numbers Dagster plots), then the dataset's lineage, then where its files are.
            "num_images": len(manifest.entries),
            "num_classes": len(counts),
            "num_skipped": len(manifest.skipped),
            "total_bytes": sum(entry.size for entry in manifest.entries),
            **added,
            "class_counts": table(
                [{"label": label, "images": number} for label, number in counts.items()],
                {"label": "Class (the image's folder)", "images": "Images of this class"},
            ),
            "split_counts": dg.MetadataValue.json(manifest.split_counts()),
            # Dataset lineage: which dataset, read from where, which of its versions.
            "dataset": resolved.name or "(a folder outside the catalogue)",
            "dataset_source": resolved.source,
            "dataset_version": version.reference if version is not None else "-",
            "dataset_chosen_by": resolved.chosen_by,
            "pinned_version": resolved.pinned is not None,
            "dataset_root": home_path(manifest.root),
            "data_version": manifest.data_version,
            "dataset_store": home_path(store_uri),
            "skipped_files": dg.MetadataValue.json([skipped.__dict__ for skipped in manifest.skipped[:50]]),
            "empty_label_folders": dg.MetadataValue.json(list(manifest.empty_labels)),
            **code_version_metadata(context, cache_hit=False, cache_key=manifest.data_version),
        },
    )


# The asset with `dataset` as free text, for code that binds its own resources (tests, notebooks).
raw_images = build_raw_images()

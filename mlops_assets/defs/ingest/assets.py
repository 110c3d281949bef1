"""Ingest: the dataset folder becomes a manifest with a content-derived data version."""

import dagster as dg

from mlops_assets.defs.metadata import markdown_table
from mlops_assets.defs.versioning import code_version_metadata
from mlops_assets.lib.data.manifest import DatasetManifest
from mlops_assets.resources.dataset import DatasetSource


@dg.asset(group_name="ingest", kinds={"python"})
def raw_images(context: dg.AssetExecutionContext, dataset: DatasetSource) -> dg.Output[DatasetManifest]:
    """Manifest of the dataset folder (path, label, size, content hash); its hash is the data version."""
    manifest = dataset.scan()
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
            "dataset_root": dg.MetadataValue.path(manifest.root),
            "data_version": manifest.data_version,
            "num_images": len(manifest.entries),
            "num_classes": len(counts),
            "total_bytes": sum(entry.size for entry in manifest.entries),
            "split_counts": dg.MetadataValue.json(manifest.split_counts()),
            "class_counts": markdown_table(["label", "images"], list(counts.items())),
            "num_skipped": len(manifest.skipped),
            "skipped_files": dg.MetadataValue.json([skipped.__dict__ for skipped in manifest.skipped[:50]]),
            "empty_label_folders": dg.MetadataValue.json(list(manifest.empty_labels)),
            **code_version_metadata(context, cache_hit=False, cache_key=manifest.data_version),
        },
    )

"""Which dataset a run reads, and where its files come from.

A run chooses in raw_images' config (`dataset`, `version`, `path`; `mlops run --dataset NAME[@VERSION]|PATH` writes
it), in this order: a path; a catalogue dataset named there; else the project's current dataset (what `mlops run
--dataset` last chose in this environment); else the operator's folder (`resources.dataset.config.root`, or
MLOPS_DATASET); else the bundled sample. A version pins a recorded data version: its manifest and files come from the
dataset store, whatever its source holds now. Anything else is scanned from its source now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_assets.lib.data.sample_data import SAMPLE_NAME, export_digits
from mlops_assets.lib.registry.datasets import (
    CURRENT,
    SAMPLE,
    CatalogError,
    DatasetCatalog,
    DatasetVersionView,
    split_reference,
)
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.dataset import DatasetSource, FolderDatasetSource

OP_CONFIG = "ops.raw_images.config"
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class DatasetChoice:
    """What a run asked for: a catalogue dataset (`name`, '' for the current one) and optionally one of its recorded
    versions (`version`: a number or a data version prefix), or a folder/URL outside the catalogue (`path`)."""

    name: str = ""
    version: str = ""
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return self.path
        name = self.name or CURRENT
        return f"{name}@{self.version}" if self.version else name

    def as_config(self) -> dict[str, str]:
        """raw_images' config for this choice."""
        return {"dataset": self.name or CURRENT, "version": self.version, "path": self.path}

    @classmethod
    def from_config(cls, config: Any) -> DatasetChoice:
        """From raw_images' config (a RawImagesConfig or its values as a mapping)."""
        values = config if isinstance(config, Mapping) else config.model_dump()
        name = str(values.get("dataset") or CURRENT)
        return cls("" if name == CURRENT else name, str(values.get("version") or ""), str(values.get("path") or ""))

    @classmethod
    def from_run_config(cls, run_config: Any) -> DatasetChoice | None:
        """The choice in a run config's `ops.raw_images.config` (None when it sets none)."""
        ops = run_config.get("ops") if isinstance(run_config, Mapping) else None
        section = ops.get("raw_images") if isinstance(ops, Mapping) else None
        config = section.get("config") if isinstance(section, Mapping) else None
        return cls.from_config(config) if isinstance(config, Mapping) else None


@dataclass(frozen=True)
class ResolvedDataset:
    """A choice made concrete: the catalogue name (None for a folder outside it), the source to scan (for a pinned
    version, the one it was recorded from), the pinned version, and how it was chosen (for messages)."""

    name: str | None
    source: str
    pinned: DatasetVersionView | None
    chosen_by: str

    def __str__(self) -> str:
        if self.pinned is not None:
            return f"{self.pinned.reference} (data version {self.pinned.data_version[:12]}, from the dataset store)"
        return f"{self.name} ({self.source})" if self.name else f"the folder {self.source}"


def parse_choice(text: str, catalog: DatasetCatalog) -> DatasetChoice:
    """`--dataset` text: `NAME`, `NAME@VERSION` (a catalogue dataset; a name wins over a folder of the same name), or
    a folder / gs:// URL. Raises ConfigError naming the argument when it is none of them."""
    if "://" in text:
        return DatasetChoice(path=text)
    reference = split_reference(text)
    if reference is not None and reference[0] in catalog.names():
        return DatasetChoice(name=reference[0], version=reference[1])
    path = Path(text).expanduser()
    if path.exists() or reference is None:
        return DatasetChoice(path=str(path.resolve()))
    known = ", ".join(catalog.names())
    raise ConfigError(
        COMMAND_LINE,
        [
            f"--dataset = {text!r}: no dataset named {reference[0]!r} in the catalogue (known: {known}) and no such "
            f"folder; add it with `mlops datasets add {reference[0]} SOURCE`, or pass a folder"
        ],
    )


def sample_folder() -> Path:
    """The bundled sample digits as a folder under MLOPS_HOME (exported on first use)."""
    from mlops_assets import settings

    return export_digits(settings.datasets_dir() / SAMPLE_NAME)


def resolve(choice: DatasetChoice, catalog: DatasetCatalog, dataset: DatasetSource) -> ResolvedDataset:
    """The dataset `choice` means here (see the module's order); `dataset` is the environment's source reader, whose
    `root` is the operator's folder. Raises CatalogError naming what is unknown or gone."""
    if choice.path:
        if choice.name:
            raise CatalogError(
                f"both a path ({choice.path}) and a dataset ({choice.name!r}) are chosen: leave `dataset` at "
                f"'{CURRENT}' to read the path, or empty `path` to read the dataset"
            )
        if choice.version:
            raise CatalogError(
                f"version {choice.version!r} with the path {choice.path}: only catalogue datasets have recorded "
                f"versions; `mlops datasets add NAME {choice.path}` names it"
            )
        return ResolvedDataset(None, choice.path, None, "the path chosen for the run")
    name, version, chosen_by = choice.name, choice.version, "the dataset chosen for the run"
    if not name:
        current = catalog.current()
        if current is not None and current.path:
            if version:
                raise CatalogError(
                    f"version {version!r} of the current dataset, which is the folder {current.path} outside the "
                    "catalogue: only catalogue datasets have recorded versions"
                )
            return ResolvedDataset(None, current.path, None, "the project's current dataset")
        if current is not None:
            name, chosen_by = current.dataset_name, "the project's current dataset"
            version = version or (str(current.version) if current.version else "")
        elif dataset.root and not version:
            return ResolvedDataset(None, dataset.root, None, "the operator's dataset (resources.dataset.config.root)")
        else:
            name, chosen_by = SAMPLE, "the default (no dataset chosen yet)"
    view = catalog.dataset(name)
    if version:
        pinned = catalog.version(name, version)
        if pinned.collected_at is not None:
            raise CatalogError(
                f"version {pinned.number} of dataset {name!r} (data version {pinned.data_version[:12]}) was collected "
                f"by `mlops datasets gc` on {pinned.collected_at:%Y-%m-%d %H:%M} UTC (no model version was trained on "
                "it): its files are no longer in the dataset store; train on another version"
            )
        return ResolvedDataset(name, pinned.source, pinned, chosen_by)
    if name == SAMPLE:
        if not isinstance(dataset, FolderDatasetSource):
            raise CatalogError(
                "the bundled sample is a local folder, and this environment reads datasets from GCS "
                "(storage.dataset_source: gcs): choose a dataset whose source is gs://bucket/prefix"
            )
        return ResolvedDataset(SAMPLE, str(sample_folder()), None, chosen_by)
    return ResolvedDataset(name, view.source, None, chosen_by)


def reader(dataset: DatasetSource, source: str) -> DatasetSource:
    """The environment's source reader (an initialized resource) pointed at `source`."""
    return dataset.model_copy(update={"root": source})

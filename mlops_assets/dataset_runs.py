"""The dataset side of a run outside Dagster: `--dataset` read against this environment's catalogue, checked before the
run exists, remembered as the current dataset, and the catalogue as the launchpad shows it."""

from __future__ import annotations

import getpass
import logging
from typing import Any

from mlops_assets.dataset_choice import (
    COMMAND_LINE,
    OP_CONFIG,
    DatasetChoice,
    ResolvedDataset,
    parse_choice,
    reader,
    resolve,
)
from mlops_assets.lib.data.content_store import missing_files_error
from mlops_assets.lib.registry.datasets import CatalogError, CurrentChoice, DatasetView, read_catalogue
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.registry_home import open_catalog

log = logging.getLogger(__name__)


def actor() -> str:
    return f"{getpass.getuser()} (mlops cli)"


def catalogue_for_launchpad() -> tuple[list[DatasetView], CurrentChoice | None] | None:
    """The catalogue and the current dataset, read without creating or upgrading the registry; None when it cannot be
    read (the launchpad then takes any name, checked when the run starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from mlops_assets import settings
    from mlops_assets.environments import get_environment

    try:
        environment = get_environment()
        url = settings.registry_url(settings.environment_settings(environment).registry)
        return read_catalogue(url, environment)
    except (SQLAlchemyError, ConfigError, OSError) as error:
        log.warning(
            "The dataset catalogue could not be read (%s): the launchpad takes any dataset name, checked when the run "
            "starts.",
            str(error).splitlines()[0],
        )
        return None


def choice_from_argument(text: str | None) -> DatasetChoice | None:
    """`--dataset` as a choice (None when not given); raises ConfigError naming the argument when it names no
    dataset of the catalogue and no folder, or a version the dataset does not have (or whose files were collected).
    A path or URL is taken as it is, without opening the registry (the preflight checks it can be read)."""
    from mlops_assets.environments import opened

    if text is None:
        return None
    if "://" in text or "/" in text:
        return parse_choice(text, _NO_CATALOG)
    with open_catalog() as catalog:
        choice = parse_choice(text, catalog)
        if choice.name:
            with opened("dataset") as dataset:
                try:
                    resolve(choice, catalog, dataset)
                except CatalogError as error:
                    raise ConfigError(COMMAND_LINE, [f"--dataset = {text!r}: {error}"]) from None
    return choice


class _NoCatalog:
    """Stands in for the catalogue where the text is a path either way."""

    def names(self) -> list[str]:
        return []


_NO_CATALOG: Any = _NoCatalog()


def with_choice(run_config: dict | None, choice: DatasetChoice | None) -> dict | None:
    """`run_config` with raw_images' config set to `choice`; ConfigError when the run config chooses a dataset too."""
    if choice is None:
        return run_config
    run_config = dict(run_config or {})
    ops = dict(run_config.get("ops") or {})
    section = dict(ops.get("raw_images") or {})
    given = DatasetChoice.from_run_config(run_config)
    if given is not None and given != choice and given != DatasetChoice():
        raise ConfigError(
            COMMAND_LINE,
            [f"--dataset = {str(choice)!r}: the run config chooses a dataset too ({OP_CONFIG}: {given}); keep one"],
        )
    section["config"] = {**dict(section.get("config") or {}), **choice.as_config()}
    ops["raw_images"] = section
    run_config["ops"] = ops
    return run_config


def check_choice(
    choice: DatasetChoice | None, setting: str = "--dataset", source: str = COMMAND_LINE
) -> ResolvedDataset:
    """Resolve `choice` (None: the run's default, the current dataset) as the run will, before it exists: a dataset
    or version that is unknown or collected is a ConfigError naming `setting`; a pinned version whose files the
    store no longer holds is a StoreError naming them. Returns the ResolvedDataset."""
    from mlops_assets.environments import opened

    named = f"{setting} = {str(choice)!r}"
    if choice is None:  # what the project's current dataset (or the default) names
        choice, named, source = DatasetChoice(), "the current dataset", "dataset catalogue"
    with open_catalog() as catalog, opened("dataset") as dataset:
        try:
            resolved = resolve(choice, catalog, dataset)
        except CatalogError as error:
            raise ConfigError(source, [f"{named}: {error}"]) from None
    if resolved.pinned is not None:
        with opened("dataset_store") as store:
            manifest = store.manifest(resolved.pinned.data_version)
            missing = store.missing(manifest)
            if missing:
                raise missing_files_error(manifest, missing, store.uri())
    return resolved


def remember(choice: DatasetChoice) -> None:
    """Make `choice` this environment's current dataset (a pinned version stays pinned)."""
    with open_catalog() as catalog:
        if choice.path:
            catalog.set_current(actor(), path=choice.path)
            return
        name = choice.name
        if not name:
            return  # "the current dataset" chosen again: nothing changes
        version = catalog.version(name, choice.version).number if choice.version else None
        catalog.set_current(actor(), name=name, version=version)


def data_version_now(resolved: ResolvedDataset) -> str:
    """The data version the run would record now: the pinned one, or the source's as scanned now (unchanged files
    are not read again)."""
    from mlops_assets.environments import opened

    if resolved.pinned is not None:
        return resolved.pinned.data_version
    with opened("dataset") as dataset:
        return reader(dataset, resolved.source).scan().data_version


# What `storage_check_target` answers for a pinned version: no source to check.
READ_FROM_STORE = ("", "", "")


def storage_check_target(run_config: Any) -> tuple[str, str, str] | None:
    """For the storage preflight: (source, setting, value) of the dataset source the run will scan when raw_images'
    config or the current dataset chooses it; READ_FROM_STORE for a pinned version (`check_choice` checks the store
    holds it); None when neither chooses (the operator's folder or the sample: the caller's own check). Raises
    ConfigError naming the setting for an unknown dataset or version."""
    from mlops_assets.environments import opened

    choice = DatasetChoice.from_run_config(run_config)
    with open_catalog() as catalog:
        if (choice is None or choice == DatasetChoice()) and catalog.current() is None:
            return None
        with opened("dataset") as dataset:
            try:
                resolved = resolve(choice or DatasetChoice(), catalog, dataset)
            except CatalogError as error:
                raise ConfigError("run config", [f"{OP_CONFIG} = {str(choice)!r}: {error}"]) from None
    if resolved.pinned is not None:
        return READ_FROM_STORE
    if choice is not None and choice.path:
        return "run config", f"{OP_CONFIG}.path", resolved.source
    what = f"dataset {resolved.name}" if resolved.name else "the folder"
    if choice is None or not choice.name:
        what = f"the current dataset ({what})"
    return "dataset catalogue", f"{what}: source", resolved.source

"""`mlops datasets ...` (add, list, show, gc) and `mlops reproduce N`.

A dataset is a name for a source (a folder, or a gs:// prefix where the environment reads GCS); each run on it records
its data version, numbered per dataset, with the files kept in the dataset store. There is no delete: a version's
files are collected by `gc` once no model version was trained on it, its record stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.cli_models import format_table
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.settings_validation import ConfigError

if TYPE_CHECKING:  # the catalogue loads SQLAlchemy: only the commands that open it pay for it, not --help
    from mlops_assets.lib.registry.datasets import DatasetVersionView


def _when(view: DatasetVersionView | None) -> str:
    return "-" if view is None else f"{view.recorded_at:%Y-%m-%d %H:%M}"


def _source(text: str) -> str:
    """A URL as given; a folder as an absolute path (a dataset's source must not depend on where mlops ran)."""
    return text if "://" in text else str(Path(text).expanduser().resolve())


def command_add(args: argparse.Namespace) -> int:
    from mlops_assets.dataset_choice import reader
    from mlops_assets.dataset_runs import actor
    from mlops_assets.environments import opened
    from mlops_assets.lib.registry.datasets import name_problem
    from mlops_assets.registry_home import open_catalog

    settings.export_environment()
    problem = name_problem(args.name)
    if problem:
        raise ConfigError("command line", [f"NAME = {args.name!r}: {problem}"])
    source = _source(args.source)
    with opened("dataset") as dataset:
        problem = reader(dataset, source).problem()
    if problem:
        raise ConfigError("command line", [f"SOURCE = {source!r}: {problem}"])
    with open_catalog() as catalog:
        view, created = catalog.add(args.name, source, actor())
    if created:
        print(f"Added dataset {view.name}: {view.source}. Train on it with `mlops run --dataset {view.name}`.")
    else:
        print(f"Dataset {view.name} is already in the catalogue with this source ({view.source}); nothing changed.")
    return 0


def command_list(_: argparse.Namespace) -> int:
    from mlops_assets.lib.registry.datasets import SAMPLE
    from mlops_assets.registry_home import open_catalog

    settings.export_environment()
    with open_catalog() as catalog:
        datasets = catalog.datasets()
        current = catalog.current()
        environment = catalog.environment
    rows = []
    for view in datasets:
        latest = view.latest
        marker = "*" if current is not None and current.dataset_name == view.name else ""
        rows.append(
            [
                f"{marker}{view.name}",
                view.source,
                view.num_versions,
                f"{latest.number} ({latest.data_version[:12]})" if latest else "-",
                latest.num_images if latest else None,
                latest.num_classes if latest else None,
                _when(latest),
            ]
        )
    print(format_table(["dataset", "source", "versions", "latest", "images", "classes", "recorded"], rows))
    print(f"\nCurrent dataset ({environment}): " + (f"{current} (*)" if current else f"none chosen ({SAMPLE} is used)"))
    return 0


def command_show(args: argparse.Namespace) -> int:
    from mlops_assets.registry_home import open_catalog

    settings.export_environment()
    with open_catalog() as catalog:
        view = catalog.dataset(args.name)
        versions = catalog.versions(args.name)
        models = {version.data_version: catalog.models_trained_on(version.data_version) for version in versions}
    added = f"{view.added_at:%Y-%m-%d %H:%M:%S} by {view.added_by}" if view.added_at else view.added_by
    print(f"dataset  {view.name}\nsource   {view.source}\nadded    {added}\n")
    if not versions:
        print(f"No version recorded yet; `mlops run --dataset {view.name}` records the first.")
        return 0
    rows = [
        [
            version.number,
            version.data_version[:16],
            version.num_images,
            version.num_classes,
            version.total_bytes,
            _when(version),
            ", ".join(str(number) for number in models[version.data_version]) or "-",
            f"collected {version.collected_at:%Y-%m-%d}" if version.collected_at else "kept",
        ]
        for version in versions
    ]
    headers = ["version", "data version", "images", "classes", "bytes", "recorded", "model versions", "files"]
    print(format_table(headers, rows))
    print(f"\nTrain on one with `mlops run --dataset {view.name}@VERSION`.")
    return 0


# Runs that may still read dataset files.
_IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def command_gc(_: argparse.Namespace) -> int:
    import dagster as dg

    from mlops_assets.environments import opened
    from mlops_assets.housekeeping import tidy
    from mlops_assets.registry_home import open_catalog

    settings.export_environment()
    with settings.open_instance() as instance:
        tidy(instance)  # runs of processes that died are failed first: they read nothing any more
        statuses = [dg.DagsterRunStatus[name] for name in _IN_PROGRESS]
        running = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
    if running:
        listed = ", ".join(run.run_id for run in running[:5])
        raise MLOpsError(
            f"{len(running)} run(s) in progress ({listed}) may be reading dataset files; run `mlops datasets gc` "
            "again once they have finished. Nothing was removed."
        )
    with open_catalog() as catalog:
        keep = catalog.referenced_data_versions()
        with opened("dataset_store") as store:
            collected = store.collect(keep)
            where = store.uri()
        marked = catalog.mark_collected(keep)
    print(
        f"Removed {collected.blobs_removed} file(s), {collected.bytes_removed:,} bytes, that no model version was "
        f"trained on from the dataset store ({where}); kept {collected.blobs_kept} file(s), "
        f"{collected.bytes_kept:,} bytes, of the {len(collected.versions_kept)} data version(s) model versions were "
        "trained on."
    )
    if marked:
        print("Versions whose files were collected: " + ", ".join(version.reference for version in marked))
    return 0


def command_reproduce(args: argparse.Namespace) -> int:
    from mlops_assets.reproduce import reproduce

    result = reproduce(args.version, keep=args.keep)
    print("\n".join(result.report()))
    return 0 if result.weights_sha256 is not None and result.matched else 1


def add_datasets_parser(commands: argparse._SubParsersAction) -> None:
    """Register `mlops datasets ...` and `mlops reproduce`."""
    datasets = commands.add_parser("datasets", help="the dataset catalogue: add, list, show, gc")
    actions = datasets.add_subparsers(dest="datasets_command", required=True)

    add = actions.add_parser("add", help="name a dataset source (a folder, or gs://bucket/prefix)")
    add.add_argument("name", help="the dataset's name (letters, digits, '.', '_', '-')")
    add.add_argument(
        "source", help="folder <root>/<label>/<image>, or gs://bucket/prefix where the environment reads GCS"
    )
    add.set_defaults(handler=command_add)

    listing = actions.add_parser("list", help="every dataset with its latest version; * marks the current one")
    listing.set_defaults(handler=command_list)

    show = actions.add_parser("show", help="a dataset's recorded versions and the model versions trained on them")
    show.add_argument("name")
    show.set_defaults(handler=command_show)

    gc = actions.add_parser("gc", help="remove stored files no model version was trained on")
    gc.set_defaults(handler=command_gc)

    reproduce = commands.add_parser(
        "reproduce", help="rebuild a registry version from its commit, data and hyper-parameters; compare the weights"
    )
    reproduce.add_argument("version", type=int)
    reproduce.add_argument("--keep", action="store_true", help="keep the temporary worktree, home and run log")
    reproduce.set_defaults(handler=command_reproduce)

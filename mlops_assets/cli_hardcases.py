"""`mlops hardcases export|ingest`: the low-confidence inputs the service kept, out for review and back into the
dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.serving.prediction_store import LOG_STAGES
from mlops_assets.lib.settings_validation import ConfigError


def command_export(args: argparse.Namespace) -> int:
    from mlops_assets.environments import opened
    from mlops_assets.lib.monitoring.hard_cases import export_hard_cases

    settings.export_environment()
    share = settings.environment_settings().monitoring.capture.hard_cases.test_share
    with opened("prediction_logs") as logs:
        result = export_hard_cases(logs.store(), Path(args.out).expanduser().resolve(), share, stage=args.stage)
    per_label = ", ".join(f"{label} {count}" for label, count in sorted(result.written.items())) or "none"
    print(
        f"Exported {result.total} hard case(s) to {result.destination} by predicted label ({per_label}); "
        f"{result.already_there} exported before; {result.duplicates} duplicate(s) of another case's image skipped; "
        f"{result.in_test} marked for the test split (share {share:g})."
    )
    for problem in result.unusable:
        print(f"  left out: {problem}")
    print("Move each file to the folder of its true label (or delete it), then `mlops hardcases ingest DIR`.")
    return 0


def _dataset_folder(name: str | None) -> tuple[str, Path]:
    """The catalogue dataset `name` (default: the current one) and its folder; a ConfigError when it has none."""
    from mlops_assets.dataset_runs import open_catalog
    from mlops_assets.lib.registry.datasets import CatalogError

    with open_catalog() as catalog:
        if name is None:
            current = catalog.current()
            if current is None or current.dataset_name is None:
                raise ConfigError(
                    "command line",
                    [
                        "--dataset: no current catalogue dataset in this environment; hard cases join a dataset "
                        "folder of the catalogue: run `mlops datasets add NAME FOLDER` first (then `mlops run "
                        "--dataset NAME` makes it current), or name one with --dataset"
                    ],
                )
            name = current.dataset_name
        try:
            source = catalog.dataset(name).source
        except CatalogError as error:
            raise ConfigError("command line", [f"--dataset = {name!r}: {error}"]) from None
    if "://" in source:
        raise ConfigError("command line", [f"--dataset = {name!r}: its source {source} is not a local folder"])
    return name, Path(source)


def command_ingest(args: argparse.Namespace) -> int:
    from mlops_assets.lib.monitoring.hard_cases import ingest_reviewed

    settings.export_environment()
    name, folder = _dataset_folder(args.dataset)
    result = ingest_reviewed(Path(args.review).expanduser().resolve(), folder)
    per_label = ", ".join(f"{label} {count}" for label, count in sorted(result.copied.items())) or "none"
    print(
        f"Added {result.total} reviewed hard case(s) to dataset {name} ({folder}): {per_label}; "
        f"{result.already_there} already there. `mlops run --dataset {name}` records its next version."
    )
    for skipped in result.skipped:
        print(f"  skipped: {skipped}")
    return 0


def add_hardcases_parser(commands: argparse._SubParsersAction) -> None:
    hardcases = commands.add_parser("hardcases", help="low-confidence inputs: export for review, ingest reviewed")
    actions = hardcases.add_subparsers(dest="hardcases_command", required=True)
    export = actions.add_parser("export", help="write kept hard cases into DIR/<predicted label>/ for review")
    export.add_argument("--out", required=True, help="the review folder (dataset layout)")
    export.add_argument(
        "--stage",
        choices=LOG_STAGES,
        help="only the hard cases of this deployment stage's servers (unstaged: servers started outside a deployment "
        "stage; default: every stage)",
    )
    export.set_defaults(handler=command_export)
    ingest = actions.add_parser("ingest", help="copy reviewed hard cases into a catalogue dataset's folder")
    ingest.add_argument("review", help="the review folder, each file under its true label")
    ingest.add_argument("--dataset", help="the catalogue dataset (default: the current one)")
    ingest.set_defaults(handler=command_ingest)

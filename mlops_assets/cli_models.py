"""`mlops models ...`: list, inspect, compare, promote, roll back, disable and enable registered versions.

There is deliberately no delete command: a version is disabled, never removed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.provenance import describe_commit, dirty_label
from mlops_assets.lib.registry.statuses import DISABLED, PRODUCTION

if TYPE_CHECKING:  # the registry loads SQLAlchemy: only the commands that open it pay for it, not --help
    from mlops_assets.lib.registry.registry import ModelRegistry, VersionView


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with columns padded to their widest cell."""

    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)

    text = [[cell(h) for h in headers]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in text]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def open_registry() -> ModelRegistry:
    """The environment's registry; an empty or unreadable registry file is refused by name (RegistryFileError)."""
    from mlops_assets.registry_home import open_registry as open_home_registry

    return open_home_registry()


def _actor() -> str:
    return f"{getpass.getuser()} (mlops cli)"


def _commit(view: VersionView) -> str:
    return describe_commit(view.git_commit, view.git_dirty)


def command_list(_: argparse.Namespace) -> int:
    with open_registry() as models:
        versions = models.versions()
        environment = models.environment
    if not versions:
        print(f"No model versions registered yet (environment {environment}); run `mlops run`.")
        return 0
    rows = [
        [
            v.number,
            v.status,
            v.metrics["accuracy"],
            v.metrics["macro_f1"],
            v.dataset_size,
            v.data_version[:12],
            _commit(v),
            v.plugin,
            v.parent_version,
            v.registered_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for v in versions
    ]
    headers = ["version", f"status ({environment})", "accuracy", "macro_f1", "images", "data", "commit", "plugin"]
    print(format_table([*headers, "compared with", "registered"], rows))
    return 0


def _dataset(view: VersionView) -> str:
    """`NAME@VERSION (source)` of the catalogue version it was trained on, or the folder outside the catalogue."""
    if view.dataset_reference is not None:
        return f"{view.dataset_reference} ({view.dataset_source})"
    if view.dataset_source is not None:
        return f"the folder {view.dataset_source} (not in the catalogue)"
    return "not recorded (registered before datasets were)"


def _libraries(view: VersionView) -> str:
    if view.library_versions is None:
        return "not recorded (registered before they were)"
    return ", ".join(f"{name} {version}" for name, version in sorted(view.library_versions.items()))


def command_show(args: argparse.Namespace) -> int:
    with open_registry() as models:
        view = models.version(args.version)
        gates = models.gate_decisions(args.version)
        history = models.history(args.version)
    fields = [
        ("version", view.number),
        ("status", view.status),
        ("model tag", view.model_tag),
        ("bento tag", view.bento_tag),
        ("plugin", view.plugin),
        ("labels", ", ".join(view.labels)),
        ("dataset", _dataset(view)),
        ("data version", view.data_version),
        ("dataset size", f"{view.dataset_size} images"),
        ("git commit", _commit(view)),
        ("working tree", dirty_label(view.git_dirty)),
        ("code versions", json.dumps(view.code_versions, sort_keys=True)),
        ("hyper-parameters", json.dumps(view.hyperparameters, sort_keys=True)),
        ("test accuracy", f"{view.metrics['accuracy']:.4f} on {view.metrics['num_examples']} images"),
        ("test macro F1", f"{view.metrics['macro_f1']:.4f}"),
        ("training", f"{view.training_seconds:.1f} s on {view.training_hardware or view.training_device}"),
        ("libraries", _libraries(view)),
        ("compared with", f"version {view.parent_version}" if view.parent_version else "none (first model)"),
        ("Dagster run", view.dagster_run_id),
        ("registered", f"{view.registered_at:%Y-%m-%d %H:%M:%S} by {view.registered_by}"),
    ]
    width = max(len(name) for name, _ in fields)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in fields))
    if gates:
        print("\nGate decisions:")
        print(
            format_table(
                ["when", "passed", "reason"], [[f"{g.decided_at:%Y-%m-%d %H:%M:%S}", g.passed, g.reason] for g in gates]
            )
        )
    print("\nHistory:")
    print(_history_table(history))
    return 0


def _history_table(entries) -> str:
    return format_table(
        ["#", "when", "version", "action", "from", "to", "who", "why"],
        [
            [e.id, f"{e.at:%Y-%m-%d %H:%M:%S}", e.version, e.action, e.from_status, e.to_status, e.actor, e.reason]
            for e in entries
        ],
    )


def command_history(_: argparse.Namespace) -> int:
    with open_registry() as models:
        print(_history_table(models.history()))
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from mlops_assets.lib.models.evaluation import evaluate_champion
    from mlops_assets.model_store import version_model_path

    data = _latest_validated_images()
    with open_registry() as models:
        views = [models.version(args.version_a), models.version(args.version_b)]
    results = [evaluate_champion(v.number, v.model_tag, str(version_model_path(v)), data) for v in views]
    a, b = views
    print(f"Both evaluated now on the test split of data version {data.data_version[:12]}:\n")
    rows: list[list[object]] = [
        ["status", a.status, b.status, ""],
        ["data version (trained on)", a.data_version[:12], b.data_version[:12], ""],
        ["dataset size", a.dataset_size, b.dataset_size, ""],
        ["git commit", _commit(a), _commit(b), ""],
        ["plugin", a.plugin, b.plugin, ""],
        [
            "hyper-parameters",
            json.dumps(a.hyperparameters, sort_keys=True),
            json.dumps(b.hyperparameters, sort_keys=True),
            "",
        ],
    ]
    for metric in ("accuracy", "macro_f1"):
        values = [r.metrics[metric] if r.comparable else None for r in results]
        change = values[1] - values[0] if None not in values else None
        rows.append([f"{metric} (now)", *values, f"{change:+.4f}" if change is not None else ""])
    if all(r.comparable for r in results):
        per_class = {row["label"]: [row["f1"]] for row in results[0].metrics["per_class"]}
        for row in results[1].metrics["per_class"]:
            per_class[row["label"]].append(row["f1"])
        rows += [[f"F1 class {label!r}", fa, fb, f"{fb - fa:+.4f}"] for label, (fa, fb) in per_class.items()]
    print(format_table(["", f"version {a.number}", f"version {b.number}", "B - A"], rows))
    for result in results:
        if not result.comparable:
            print(f"\nnote: {result.note}")
    return 0


def _latest_validated_images():
    """The validated_images value of the latest run: the current test split, as the gate sees it."""
    settings.export_environment()
    import dagster as dg

    from mlops_assets.definitions import build_definitions
    from mlops_assets.environments import opened

    with dg.DagsterInstance.get() as instance:
        if instance.get_latest_materialization_event(dg.AssetKey("validated_images")) is None:
            raise SystemExit("No validated_images yet; run `mlops run` first so there is a test split to compare on.")
        # Outside a run Dagster logs its IO manager's debug lines ("Loading file from ...") to the terminal, in
        # the middle of the comparison's output; the command says what it compares itself.
        disabled = logging.root.manager.disable
        logging.disable(max(disabled, logging.DEBUG))
        try:
            stored = build_definitions().load_asset_value("validated_images", instance=instance)
        finally:
            logging.disable(disabled)
    # Its arrays as a local copy: the run that wrote them may have run on another machine of the environment.
    with opened("artifacts") as artifacts:
        return artifacts.local_copy(stored, "validated_images")


def command_promote(args: argparse.Namespace) -> int:
    with open_registry() as models:
        view = models.promote(args.version, args.to, _actor(), args.reason or "", args.force)
    print(f"Version {view.number} is now in {view.status}.")
    return 0


def command_rollback(args: argparse.Namespace) -> int:
    with open_registry() as models:
        view = models.rollback(_actor(), args.reason or "", args.to)
    print(f"Rolled back: version {view.number} is in production again. Redeploy with `mlops deploy local`.")
    return 0


def command_disable(args: argparse.Namespace) -> int:
    with open_registry() as models:
        view = models.disable(args.version, _actor(), args.reason)
    print(f"Version {view.number} is disabled (kept with its history; `mlops models enable {view.number}` undoes it).")
    return 0


def command_enable(args: argparse.Namespace) -> int:
    with open_registry() as models:
        view = models.enable(args.version, _actor(), args.reason or "")
    print(f"Version {view.number} is enabled again ({view.status}).")
    return 0


def command_restore(args: argparse.Namespace) -> int:
    from mlops_assets.model_store import restore_version

    settings.export_environment()
    with open_registry() as models:
        view = models.version(args.version)
    outcome = restore_version(view)
    if outcome.restored:
        print(
            f"Restored version {view.number}'s model {outcome.model_tag} into the BentoML store from "
            f"{view.package_path} (weights SHA-256 {view.weights_sha256[:16]}... verified)."
        )
    else:
        print(
            f"Version {view.number}'s model {outcome.model_tag} is already in the BentoML store with the recorded "
            f"weights (SHA-256 {view.weights_sha256[:16]}...); nothing to restore."
        )
    return 0


def deployable_bento(bento_tag: str | None) -> str:
    """The bento to deploy: the production version's by default; a disabled version's bento is refused. It is
    brought from the environment's bento store when this machine's BentoML store lacks it; one that is in neither
    is refused by `require_local_bento`, saying how to get it back."""
    from mlops_assets.environments import fetch_bento
    from mlops_assets.packaging import bento_model_tag
    from mlops_assets.resources.local_deployer import require_local_bento

    with open_registry() as models:
        if bento_tag is None:
            production = models.production()
            if production is None:
                raise MLOpsError("No version is in production; `mlops run` or `mlops models promote N` first.")
            return fetch_bento(production.bento_tag)
        # Checked before its model tag is read from it: a bento the store lacks has none to read.
        require_local_bento(fetch_bento(bento_tag))
        view = models.find_by_model_tag(bento_model_tag(bento_tag))
    if view is not None and view.status == DISABLED:
        raise SystemExit(
            f"Bento {bento_tag} serves version {view.number}, which is disabled; "
            f"`mlops models enable {view.number}` first or deploy another version."
        )
    return bento_tag


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the model registry: list, show, compare, promote, roll back, ...")
    actions = models.add_subparsers(dest="models_command", required=True)

    actions.add_parser("list", help="every version with its status, metrics and lineage").set_defaults(
        handler=command_list
    )
    show = actions.add_parser("show", help="one version's full lineage, gate decisions and history")
    show.add_argument("version", type=int)
    show.set_defaults(handler=command_show)
    actions.add_parser("history", help="every status change, oldest first").set_defaults(handler=command_history)

    compare = actions.add_parser("compare", help="evaluate two versions now on the same test split, side by side")
    compare.add_argument("version_a", type=int)
    compare.add_argument("version_b", type=int)
    compare.set_defaults(handler=command_compare)

    promote = actions.add_parser("promote", help="move a version to staging or production")
    promote.add_argument("version", type=int)
    promote.add_argument("--to", choices=["staging", PRODUCTION], default=PRODUCTION)
    promote.add_argument("--force", action="store_true", help="promote past a failed gate (needs --reason)")
    promote.add_argument(
        "--reason",
        help="why; recorded in the audit log; required with --force and for a version once rolled back or disabled",
    )
    promote.set_defaults(handler=command_promote)

    rollback = actions.add_parser("rollback", help="return production to the previous (or a named) version")
    rollback.add_argument("--to", type=int, help="an earlier production version (default: the previous one)")
    rollback.add_argument("--reason")
    rollback.set_defaults(handler=command_rollback)

    disable = actions.add_parser("disable", help="keep a version but refuse to promote or deploy it")
    disable.add_argument("version", type=int)
    disable.add_argument("--reason", required=True)
    disable.set_defaults(handler=command_disable)

    restore = actions.add_parser(
        "restore",
        help="put a version's model back in the BentoML store from its recorded model package (weights verified)",
    )
    restore.add_argument("version", type=int)
    restore.set_defaults(handler=command_restore)

    enable = actions.add_parser("enable", help="undo disable")
    enable.add_argument("version", type=int)
    enable.add_argument("--reason")
    enable.set_defaults(handler=command_enable)

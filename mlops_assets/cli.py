"""The `mlops` command line: run the pipeline, deploy it locally, call it."""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.cli_datasets import add_datasets_parser
from mlops_assets.cli_deploy import add_deploy_parsers, refuse_a_project_port
from mlops_assets.cli_dev import add_dev_parser
from mlops_assets.cli_feedback import add_feedback_parser
from mlops_assets.cli_hardcases import add_hardcases_parser
from mlops_assets.cli_models import add_models_parser, deployable_bento
from mlops_assets.cli_monitoring import add_monitor_parser
from mlops_assets.cli_predict import Predictions, predict_files, report, service_url
from mlops_assets.lib.errors import DEBUG_VARIABLE, MLOpsError
from mlops_assets.lib.settings_validation import ConfigError, read_yaml

if TYPE_CHECKING:  # every section's settings model: loaded by the commands that read the environment file
    from mlops_assets.lib.environment_settings import EnvironmentSettings


def load_run_config(path: str | Path) -> dict:
    """A `--config` file: a YAML mapping of run config; a ConfigError names the file and what is wrong with it (its
    settings are checked by the run's preflight, `config_checks.check_before_run`)."""
    source = f"--config {path}"
    content = read_yaml(Path(path), source)
    if not isinstance(content, dict):
        raise ConfigError(source, [f"expected a mapping of run config (ops: ...), not {content!r}"])
    return content


def _run_config(args: argparse.Namespace) -> dict | None:
    return load_run_config(args.config) if args.config else None


def command_run(args: argparse.Namespace) -> int:
    from mlops_assets.runner import format_summary, run_pipeline

    summary = run_pipeline(args.dataset, _run_config(args))
    print(format_summary(summary))
    return 0 if summary.success else 1


def command_rebuild(args: argparse.Namespace) -> int:
    from mlops_assets.runner import format_rebuild, rebuild_pipeline

    summary = rebuild_pipeline(args.dataset, _run_config(args))
    print(format_rebuild(summary))
    return 0 if summary.success else 1


def _invoked_as() -> str:
    """How to call this command again from here: `mlops` where that name finds it, else the path it was run by
    (`make demo` runs `.venv/bin/mlops`, which is on no PATH), relative to this folder when inside it."""
    program = Path(sys.argv[0])
    found = shutil.which("mlops")
    if program.name != "mlops" or (found is not None and Path(found).resolve() == program.resolve()):
        return "mlops"
    try:
        relative = os.path.relpath(program.resolve())
    except (OSError, ValueError):  # this folder was removed meanwhile: the path as given still works
        return str(program)
    if relative.startswith(".."):
        return str(program.resolve())
    # A bare name would be looked up on PATH, where it is not.
    return relative if os.sep in relative else f".{os.sep}{relative}"


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError("command line", [f"--port = {port}: expected an integer from 1 to 65535"])


def _local_settings() -> EnvironmentSettings:
    """The checked settings of the selected environment (MLOPS_ENV, default local: deployments/<env>.yaml), whose
    `server:` and `serving:` sections `deploy local` and `predict` use on this machine; a ConfigError names any bad
    setting."""
    return settings.environment_settings()


def command_deploy(args: argparse.Namespace) -> int:
    from mlops_assets.resources.local_deployer import current_deployment, deploy_local

    _local_settings()  # the `server:` section, and the rest of the file, before a server is started
    _check_port(args.port)
    settings.export_environment()
    previous = current_deployment()
    stopped = (
        f"the local deployment it replaces: {previous.bento_tag} at {previous.url} (pid {previous.pid})"
        if previous is not None
        else None
    )
    try:
        deployment = deploy_local(deployable_bento(args.bento), port=args.port)
    except MLOpsError:
        if stopped is not None and current_deployment() is None:
            print(f"Stopped {stopped}; the new server did not start (below).", file=sys.stderr)
        raise
    if stopped is not None:
        print(f"Stopped {stopped}")
    print(f"Serving {deployment.bento_tag} at {deployment.url} (pid {deployment.pid}, log {deployment.log_path})")
    print(f"Stop it with: {_invoked_as()} undeploy local")
    return 0


def command_undeploy(args: argparse.Namespace) -> int:
    from mlops_assets.resources.local_deployer import stop_local

    stopped = stop_local()
    print(f"Stopped {stopped.bento_tag} at {stopped.url}" if stopped else "No local deployment was running.")
    return 0


def _sample_files(dataset_root: Path, count: int) -> list[Path]:
    """One test-split file per label (the split that training never saw), up to `count` files."""
    from mlops_assets.lib.data.manifest import scan_dataset

    manifest = scan_dataset(dataset_root)
    chosen: dict[str, Path] = {}
    for entry in manifest.entries:
        if entry.split == "test" and entry.label not in chosen:
            chosen[entry.label] = manifest.absolute_path(entry)
    return list(chosen.values())[:count]


def _service_api_key() -> str | None:
    """The key the local service requires, from the variable `serving.api_key_env` names (None when unset)."""
    return os.environ.get(_local_settings().serving.api_key_env) or None


def command_predict(args: argparse.Namespace) -> int:
    url = service_url(args.url)
    return report(predict_files(url, [Path(f) for f in args.files], _service_api_key()))


def command_demo(args: argparse.Namespace) -> int:
    from mlops_assets.defs.metadata import resolve_home_path
    from mlops_assets.resources.local_deployer import deploy_local
    from mlops_assets.runner import format_summary, run_pipeline

    _check_port(args.port)
    if args.port is not None:
        refuse_a_project_port(args.port)  # as `mlops deploy local --port` does, before the pipeline runs
    summary = run_pipeline(args.dataset)
    print(format_summary(summary))
    if not summary.success:
        return 1
    deployment = deploy_local(summary.value("bento", "bento_tag"), port=args.port)
    root = resolve_home_path(summary.value("raw_images", "dataset_root"))  # the folder the run read
    files = _sample_files(root, args.samples)
    print(f"\nLocal server {deployment.url} answering {len(files)} requests for held-out test images:")
    outcome = predict_files(deployment.url, files, _service_api_key())
    for path, answer in outcome.answers:
        top = answer["predictions"][0]
        print(
            f"  POST /predict {path.parent.name}/{path.name} (true label {path.parent.name}) -> "
            f"label {top['label']}, confidence {top['confidence']:.3f}, model {answer['model_version']}"
        )
    if outcome.failed:
        return report(Predictions(errors=outcome.errors, unreachable=outcome.unreachable))
    print(f"\nServer URL: {deployment.url}  (try: curl -F images=@{files[0]} {deployment.url}/predict)")
    print(f"Model lineage: curl {deployment.url}/metadata")
    print(f"Stop the server with: {_invoked_as()} undeploy local")
    print("See the run, metadata and lineage in the Dagster UI: make dev")
    return 0


DATASET_HELP = (
    "a dataset of the catalogue (`mlops datasets list`), NAME@VERSION for one recorded version, or a folder "
    "<root>/<label>/<image> (gs://bucket/prefix where the environment reads GCS); remembered as the current dataset "
    "(default: the current dataset, else the bundled sample digits)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the stack trace of every error, user errors included (on the console and from Dagster's logger)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialize the whole asset chain through Dagster")
    run.add_argument("--dataset", metavar="NAME[@VERSION]|PATH", help=DATASET_HELP)
    run.add_argument("--config", help="YAML run config (ops: {trained_model: {config: {epochs: 10}}} ...)")
    run.set_defaults(handler=command_run)

    rebuild = commands.add_parser("rebuild", help="materialize only what is stale, until nothing is")
    rebuild.add_argument("--dataset", metavar="NAME[@VERSION]|PATH", help=DATASET_HELP)
    rebuild.add_argument("--config", help="YAML run config, as for `run`")
    rebuild.set_defaults(handler=command_rebuild)

    add_deploy_parsers(commands, command_deploy, command_undeploy)

    predict = commands.add_parser("predict", help="send image files to the running service")
    predict.add_argument("files", nargs="+")
    predict.add_argument("--url", help="service URL (default: the local deployment)")
    predict.set_defaults(handler=command_predict)

    demo = commands.add_parser("demo", help="run the pipeline, deploy locally and send sample requests")
    demo.add_argument("--dataset")
    demo.add_argument("--port", type=int)
    demo.add_argument("--samples", type=int, default=5)
    demo.set_defaults(handler=command_demo)

    add_models_parser(commands)
    add_datasets_parser(commands)
    add_monitor_parser(commands)
    add_feedback_parser(commands)
    add_hardcases_parser(commands)

    add_dev_parser(commands)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, except that an unrecognized argument is reported by the (sub)command whose part of the
    command line holds it, with that command's usage and the option meant (a close match, or the level an option
    belongs to: `mlops models --debug list`); exits with 2 as argparse does."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unrecognized = parser.parse_known_args(argv)
    if not unrecognized:
        return args
    levels = _invoked_parsers(parser, args)
    # Where each level's part of the command line starts: after its subcommand's name.
    starts, position = [0], 0
    for name, _ in levels[1:]:
        if name in argv[position:]:
            position = argv.index(name, position) + 1
        starts.append(position)
    first = argv.index(unrecognized[0]) if unrecognized[0] in argv else len(argv)
    reporter = levels[max(index for index, start in enumerate(starts) if start <= first)][1]
    hints = []
    for token in unrecognized:
        if token == "--":
            break  # what follows is meant as positionals
        if token.startswith("-"):
            hints += _option_hint(token.split("=", 1)[0], reporter, [level for _, level in levels])
    message = f"unrecognized arguments: {' '.join(unrecognized)}"
    reporter.error(message + (f" ({'; '.join(dict.fromkeys(hints))})" if hints else ""))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def _option_hint(name: str, reporter: argparse.ArgumentParser, levels: list[argparse.ArgumentParser]) -> list[str]:
    """What an unrecognized option was probably meant as: an option of another level, or a close match."""
    owner = next((level for level in levels if name in _options(level)), None)
    if owner is not None:
        return [f"{name} is an option of `{owner.prog}`: give it right after `{owner.prog}`"]
    for level in [reporter, *(level for level in reversed(levels) if level is not reporter)]:
        close = difflib.get_close_matches(name, _options(level), n=1)
        if close:
            where = "" if level is reporter else f", an option of `{level.prog}`"
            return [f"did you mean {close[0]}{where}?"]
    return []


def _invoked_parsers(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> list[tuple[str | None, argparse.ArgumentParser]]:
    """The parsers `args` went through, outermost first, each with the subcommand name that chose it."""
    levels: list[tuple[str | None, argparse.ArgumentParser]] = [(None, parser)]
    while True:
        commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        chosen = getattr(args, commands[0].dest, None) if commands else None
        if chosen not in (commands[0].choices if commands else {}):
            return levels
        parser = commands[0].choices[chosen]
        levels.append((chosen, parser))


# Exit codes: 1 when something ran and failed (a failed run or check, a refused registry action, a damaged file),
# 2 when a setting was refused before anything ran (as argparse does for bad arguments).
FAILED = 1
BAD_SETTINGS = 2


def main(argv: list[str] | None = None) -> int:
    """Run one `mlops` command; a user error is one `error: ...` line on stderr, without a stack trace (--debug or
    MLOPS_DEBUG=1 shows it). Anything else, a bug, keeps its traceback."""
    args = parse_arguments(build_parser(), argv)
    if args.debug:
        os.environ[DEBUG_VARIABLE] = "1"
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    try:
        return args.handler(args)
    except ConfigError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return BAD_SETTINGS
    except (FileNotFoundError, RuntimeError, ValueError, MLOpsError) as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

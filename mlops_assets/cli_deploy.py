"""`mlops deploy STAGE`, `rollback`, `undeploy`, `deployments`: staged deployments of registry versions."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mlops_assets import settings
from mlops_assets.lib.deploy.release import DeploymentRecord
from mlops_assets.lib.deploy.stage_settings import STAGES
from mlops_assets.lib.deploy.validation import DAGSTER_UI_PORT
from mlops_assets.lib.settings_validation import ConfigError


def _deployer(stage: str):
    from mlops_assets.resources.deployer import deployer_for

    return deployer_for(stage, settings.environment_settings())


def describe(record: DeploymentRecord) -> str:
    """A few lines: what serves where, the traffic split, the pinned URLs and the canary."""
    traffic = ", ".join(f"{share.revision} {share.percent}%" for share in record.traffic)
    lines = [
        f"{record.stage}: version {record.model_version} ({record.bento_tag}) at {record.url} [{record.target}]",
        f"  traffic: {traffic}",
        *(f"  pinned {name}: {url}" for name, url in record.revision_urls.items()),
    ]
    if record.canary is not None:
        lines.append(f"  canary: {record.canary.matched}/{record.canary.sent} matched at {record.canary.url}")
    if record.previous_revision:
        # Not "rollback returns to it": after a rollback, the revision just left is not where the next one goes.
        lines.append(f"  previous: {record.previous_revision} (still reachable at its pinned URL)")
    return "\n".join(lines)


def _environment_file() -> str:
    return f"deployments/{settings.environment_name()}.yaml"


def refused_options(args: argparse.Namespace) -> list[str]:
    """What `mlops deploy` refuses in its arguments before anything runs, one phrase each (the options of
    `mlops deploy local` given for a stage and those of the stages given for `local`, options `--plan` would
    ignore, a version below 1); [] when there is nothing to refuse."""
    stage = args.environment
    problems = []
    if stage == "local":
        for flag, given in (("--plan", args.plan), ("--dry-run", args.dry_run)):
            if given:
                # `local` is one server started right here, outside the staged flow: nothing to plan or simulate.
                problems.append(
                    f"{flag} is for the stages (staging, production); `mlops deploy local` starts one server on this "
                    f"machine and has no cost or dry run. Leave out the flag, or use `mlops deploy staging {flag}`"
                )
        if args.version is not None:
            problems.append(
                f"--version = {args.version}: only the stages (staging, production) take it; `mlops deploy local` "
                "serves a bento (--bento TAG, default: the production version's)"
            )
        if args.force:
            problems.append(
                "--force is for the stages (staging, production); `mlops deploy local` always starts its server anew"
            )
        return problems
    if args.bento is not None:
        problems.append(
            f"--bento = {args.bento!r}: only `mlops deploy local` takes it; {stage} serves the bento of the "
            f"registry's version for {stage} (or --version N) with the settings of deployments.{stage} in "
            f"{_environment_file()}"
        )
    if args.port is not None:
        problems.append(
            f"--port = {args.port}: only `mlops deploy local` takes it; {stage} takes its port from "
            f"deployments.{stage}.port in {_environment_file()}"
        )
    if args.version is not None and args.version < 1:
        problems.append(f"--version = {args.version}: expected an integer >= 1")
    if args.plan:
        ignored = [flag for flag, given in (("--dry-run", args.dry_run), ("--force", args.force)) if given]
        ignored += [f"--version {args.version}"] if args.version is not None else []
        if ignored:
            problems.append(
                f"--plan only prints {stage}'s estimated cost and deploys nothing; leave out {' and '.join(ignored)} "
                "or --plan"
            )
    return problems


def refuse_a_project_port(port: int) -> None:
    """Raise ConfigError when `port` (`mlops deploy local --port`) is the Dagster UI's, a local stage's URL port in the
    environment file, or one that a stage's router or revision recorded as running listens on: starting there would
    fail, or take the stage's clients (or the UI's port), so the port is refused before anything slow is imported or
    anything started."""
    from mlops_assets.resources.local_target import LocalDeployer

    environment = settings.environment_settings()
    owners: dict[int, str] = {DAGSTER_UI_PORT: f"port {DAGSTER_UI_PORT} is the Dagster UI's (`mlops dev`)"}
    for stage in STAGES:
        config = environment.deployments.stage(stage)
        if config.target == "local":
            running = LocalDeployer(stage, environment).ports_in_use()
            owners |= {number: f"port {number} is where {name} listens" for number, name in running.items()}
            owners[config.port] = (
                f"port {config.port} is the {stage} stage's URL (deployments.{stage}.port in {_environment_file()})"
            )
    if port in owners:
        raise ConfigError("command line", [f"--port = {port}: {owners[port]}; choose another port"])


def command_deploy_stage(args: argparse.Namespace) -> int:
    if args.plan:
        from mlops_assets.lib.deploy.cost import plan_text

        print(plan_text(settings.environment_settings().deployments.stage(args.environment), args.environment))
        return 0
    from mlops_assets.deploy_release import already_live, deploy_stage

    settings.export_environment()
    before = _deployer(args.environment).status()
    live = None if args.force else already_live(args.environment, args.version)
    if live is not None:
        # A restart would cost a drain and a canary for nothing; --force is for a server that misbehaves anyway.
        print(
            f"Version {live.model_version} is already live in {args.environment} at {live.url}; nothing was changed. "
            f"`mlops deploy {args.environment} --force` restarts it."
        )
        return 0
    record = deploy_stage(args.environment, args.version, args.dry_run)
    # The same version again (--force, or an unhealthy one) is a restart: said so, not shown as a new deployment.
    restart = before is not None and before.model_version == record.model_version
    why = "--force" if args.force else "it was not healthy"
    if args.dry_run:
        would = f"restart version {record.model_version} ({why}) and serve" if restart else "serve"
        print(f"Dry run: nothing was started or changed. It would {would}:")
    elif restart:
        print(
            f"Restarted version {record.model_version} in {args.environment} ({why}): a new server replaced the one "
            "that served it, at the same URLs."
        )
    print(describe(record))
    return 0


def command_rollback(args: argparse.Namespace) -> int:
    from mlops_assets.deploy_release import rollback_stage

    print(describe(rollback_stage(args.stage)))
    return 0


def command_undeploy_stage(stage: str) -> int:
    deployer = _deployer(stage)
    record = deployer.status()
    deployer.undeploy()
    print(f"Stopped {stage} ({record.url})." if record else f"Nothing was deployed in {stage}.")
    return 0


def stage_report(stage: str) -> dict:
    """What is live in `stage` with its health: {"record": DeploymentRecord JSON or None, "health": problems (one
    phrase each; [] when healthy), "warning": how the registry's version for the stage and what is live disagree,
    or None}."""
    from mlops_assets.deploy_release import disagreement

    deployer = _deployer(stage)
    record = deployer.status()
    health = deployer.health() if record is not None else []
    return {
        "record": record.to_json() if record else None,
        "health": health,
        "warning": disagreement(stage, with_health=False),
    }


def local_report() -> dict:
    """The server `mlops deploy local` started, beside the stages' reports: {"record": {"bento_tag", "url", "pid",
    "log_path"} or None when nothing was deployed, "health": problems ([] when it answers /readyz), "warning": None}."""
    from mlops_assets.lib.deploy.supervisor import group_alive
    from mlops_assets.resources.local_deployer import DeploymentError, recorded_deployment
    from mlops_assets.resources.local_target import ready

    try:
        deployment = recorded_deployment()
    except DeploymentError as error:
        return {"record": None, "health": [str(error)], "warning": None}
    if deployment is None:
        return {"record": None, "health": [], "warning": None}
    again = f"`mlops deploy local --bento {deployment.bento_tag}`"
    health = []
    if not group_alive(deployment.server()):
        health.append(f"not running: its processes are gone (its log: {deployment.log_path}); {again} starts it again")
    elif not ready(deployment.server()):
        health.append(
            f"pid {deployment.pid} does not answer {deployment.url}/readyz or its leader process is gone (its log: "
            f"{deployment.log_path}); {again} restarts it, `mlops undeploy local` stops its processes"
        )
    record = {key: getattr(deployment, key) for key in ("bento_tag", "url", "pid", "log_path")}
    return {"record": record, "health": health, "warning": None}


def command_deployments(args: argparse.Namespace) -> int:
    settings.export_environment()
    reports = {stage: stage_report(stage) for stage in STAGES}
    reports["local"] = local_report()
    if args.json:
        text = json.dumps(reports, indent=1)
    else:
        lines = []
        for stage, report in reports.items():
            record = report["record"]
            if stage == "local":
                lines.append(
                    f"local: {record['bento_tag']} at {record['url']} (`mlops deploy local`, pid {record['pid']})"
                    if record
                    else "local: nothing running (`mlops deploy local` starts a server)"
                )
            else:
                lines.append(describe(DeploymentRecord.from_json(record)) if record else f"{stage}: nothing deployed")
            if record or report["health"]:
                lines.append(f"  health: {'; '.join(report['health']) or 'ok'}")
            if report["warning"]:
                lines.append(f"  warning: {report['warning']}")
        text = "\n".join(lines)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # A reader that stopped early (`| head`) is not an error; stdout is pointed at devnull so the interpreter's
        # own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# The shell's exit status for a command ended by SIGINT (128 + 2).
INTERRUPTED = 130


def interruptible(handler, after: str):  # noqa: ANN001, ANN201 - an argparse handler in, one out
    """`handler` with Ctrl-C reported as one line, `interrupted; <after>`, and exit status 130 instead of a traceback
    (what was being started is stopped on the way out, so there is nothing else to say)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except KeyboardInterrupt:
            print(f"interrupted; {after}", file=sys.stderr)
            return INTERRUPTED

    return run


STAGE_STATE = "a revision being started was stopped and what was serving keeps serving; `mlops deployments` shows it."
LOCAL_STATE = "`mlops deploy local` serves again; `mlops undeploy local` stops what may be left."


def add_deploy_parsers(commands: argparse._SubParsersAction, deploy_local, undeploy_local) -> None:  # noqa: ANN001
    """`deploy`, `rollback`, `undeploy`, `deployments`; `deploy local` / `undeploy local` stay the one-server
    commands `deploy_local` / `undeploy_local` (a bento on this machine, no registry stage)."""

    def deploy_handler(args: argparse.Namespace) -> int:
        problems = refused_options(args)
        if problems:
            raise ConfigError("command line", problems)
        if args.environment != "local":
            return command_deploy_stage(args)
        if args.port is not None:
            refuse_a_project_port(args.port)
        return interruptible(deploy_local, LOCAL_STATE)(args)

    deploy = commands.add_parser("deploy", help="deploy a stage's registry version (or `local`: one server)")
    deploy.add_argument("environment", choices=["local", *STAGES], metavar="STAGE", help="staging, production or local")
    deploy.add_argument("--version", type=int, help="model version (default: the registry's version in STAGE)")
    deploy.add_argument("--plan", action="store_true", help="print the estimated monthly cost; deploy nothing")
    deploy.add_argument("--dry-run", action="store_true", help="show what would be deployed; start nothing")
    deploy.add_argument(
        "--force", action="store_true", help="stages: restart the version even when it is already live and healthy"
    )
    deploy.add_argument("--bento", help="local only: bento tag (default: the production version's)")
    deploy.add_argument("--port", type=int, help="local only: port (default from the environment file's server:)")
    deploy.set_defaults(handler=interruptible(deploy_handler, STAGE_STATE))

    rollback = commands.add_parser("rollback", help="move a stage's URL back to its previous revision")
    rollback.add_argument("stage", choices=STAGES)
    rollback.set_defaults(handler=interruptible(command_rollback, STAGE_STATE))

    undeploy = commands.add_parser("undeploy", help="stop a stage's deployment (every pinned revision too)")
    undeploy.add_argument("environment", choices=["local", *STAGES], metavar="STAGE")
    undeploy.set_defaults(
        handler=lambda args: (
            undeploy_local(args) if args.environment == "local" else command_undeploy_stage(args.environment)
        )
    )

    deployments = commands.add_parser(
        "deployments", help="what is live in each stage and the `deploy local` server, with their URLs"
    )
    deployments.add_argument("--json", action="store_true")
    deployments.set_defaults(handler=command_deployments)

"""Every setting is checked before anything runs: a bad one is exactly one `error:` line naming the setting, the value
given and what is allowed, exit code 2, no stack trace, and no Dagster run (so no asset) is created."""

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

# Imported before any test replaces settings.environment_file: some modules read the file's path once, at import.
import mlops_assets.definitions  # noqa: F401
import mlops_assets.resources.local_deployer  # noqa: F401
import mlops_assets.runner  # noqa: F401
from mlops_assets import settings
from mlops_assets.cli import BAD_SETTINGS, main
from mlops_assets.config_checks import check_before_run
from mlops_assets.lib.data.expectation_profiles import PROFILES_DIR
from mlops_assets.lib.environment_settings import EnvironmentSettings, load_environment_settings
from mlops_assets.lib.errors import DEBUG_VARIABLE
from mlops_assets.lib.settings_validation import ConfigError, _CoreSchemaLoader, load_settings_yaml, read_yaml

MLOPS = str(Path(sys.executable).parent / "mlops")
ENVIRONMENT = yaml.safe_load(settings.environment_file("local").read_text())
TRAINING_SETTINGS = "batch_size, device, epochs, learning_rate, plugin, plugin_params, processes, seed"
DELETE = object()


def _environment(section: str, key: str, value: object) -> str:
    """The project's local.yaml with one setting changed (or removed, or a section added)."""
    changed = copy.deepcopy(ENVIRONMENT)
    if value is DELETE:
        del changed[section][key]
    else:
        changed.setdefault(section, {})[key] = value
    return yaml.safe_dump(changed)


@dataclass(frozen=True)
class Case:
    """One bad setting: where it is written and the one line expected on stderr ({env}, {config}, {profile} stand
    for the files' paths)."""

    name: str
    line: str
    environment: str | None = None  # the environment file's text (None: the project's own)
    config: str | None = None  # the --config file's text
    profile: str | None = None  # an expectation profile selected by the --config file
    args: tuple[str, ...] = ()  # a command other than `run`


CASES = [
    # Environment file: promotion policy, server and serving settings, sections; types as well as names and ranges.
    Case(
        "promotion floor as text",
        "error: {env}: promotion.floor = 'high': expected a number from 0 to 1",
        environment=_environment("promotion", "floor", "high"),
    ),
    Case(
        "promotion tolerance quoted",
        "error: {env}: promotion.tolerance = '0.01': expected a number from 0 to 1",
        environment=_environment("promotion", "tolerance", "0.01"),
    ),
    Case(
        "promotion mode misspelt",
        "error: {env}: promotion.staging_to_production = 'auto': expected one of 'automatic', 'manual'",
        environment=_environment("promotion", "staging_to_production", "auto"),
    ),
    Case(
        "negative port",
        "error: {env}: server.port = -1: expected an integer from 1 to 65535",
        environment=_environment("server", "port", -1),
    ),
    Case(
        "non-numeric port",
        "error: {env}: server.port = 'http': expected an integer from 1 to 65535",
        environment=_environment("server", "port", "http"),
    ),
    Case(
        "unknown server key",
        "error: {env}: server.hots = '127.0.0.1': unknown setting (known: host, port, ready_timeout_s)",
        environment=_environment("server", "hots", "127.0.0.1"),
    ),
    Case(
        "missing port",
        "error: {env}: server.port: missing (expected an integer from 1 to 65535)",
        environment=_environment("server", "port", DELETE),
    ),
    Case(
        "zero batch size",
        "error: {env}: serving.max_batch_size = 0: expected an integer >= 1",
        environment=_environment("serving", "max_batch_size", 0),
    ),
    Case(
        "flag as text",
        "error: {env}: serving.access_log = 'no': expected true or false",
        environment=_environment("serving", "access_log", "no"),
    ),
    Case(
        # Unquoted: YAML 1.1 would read `yes` as true; the settings files are read with YAML 1.2's booleans.
        "flag as an unquoted yes",
        "error: {env}: serving.access_log = 'yes': expected true or false",
        environment=_environment("serving", "access_log", "YES-PLACEHOLDER").replace("YES-PLACEHOLDER", "yes"),
    ),
    Case(
        "sample rate above 1",
        "error: {env}: serving.prediction_log_sample_rate = 2: expected a number from 0 to 1",
        environment=_environment("serving", "prediction_log_sample_rate", 2),
    ),
    Case(
        "unknown section",
        "error: {env}: servr = {'port': 1}: unknown setting (known: "
        + ", ".join(EnvironmentSettings.model_fields)
        + ")",
        environment=_environment("servr", "port", 1),
    ),
    Case(
        "environment file not YAML",
        "error: {env}: not valid YAML (line 3, column 1: expected ',' or ']', but got '<stream end>')",
        environment="server:\n  host: [127.0.0.1\n",
    ),
    # Run config (--config).
    Case(
        "negative epochs",
        "error: run config: ops.trained_model.config.epochs = -3: expected an integer >= 1",
        config="ops: {trained_model: {config: {epochs: -3}}}",
    ),
    Case(
        "negative learning rate",
        "error: run config: ops.trained_model.config.learning_rate = -0.001: expected a number > 0",
        config="ops: {trained_model: {config: {learning_rate: -0.001}}}",
    ),
    Case(
        "batch size as text",
        "error: run config: ops.trained_model.config.batch_size = '64': expected an integer >= 1",
        config="ops: {trained_model: {config: {batch_size: '64'}}}",
    ),
    Case(
        "negative seed",
        "error: run config: ops.trained_model.config.seed = -1: expected an integer from 0 to 4294967295",
        config="ops: {trained_model: {config: {seed: -1}}}",
    ),
    Case(
        "unknown device",
        "error: run config: ops.trained_model.config.device = 'gpu': expected 'auto', 'cpu', 'cuda', 'cuda:<index>' "
        "or 'mps'",
        config="ops: {trained_model: {config: {device: gpu}}}",
    ),
    Case(
        "misspelt training setting",
        f"error: run config: ops.trained_model.config.epoch = 3: unknown setting (known: {TRAINING_SETTINGS})",
        config="ops: {trained_model: {config: {epoch: 3}}}",
    ),
    Case(
        "plug-in params out of range and misspelt",
        "error: run config: ops.trained_model.config.plugin_params.dropout = 5: expected a number >= 0 and < 1; "
        "ops.trained_model.config.plugin_params.width = -3: expected an integer from 1 to 1024; "
        "ops.trained_model.config.plugin_params.typo_param = 1: unknown setting (known: deterministic, dropout, width)",
        config="ops: {trained_model: {config: {epochs: 1, plugin_params: {dropout: 5, width: -3, typo_param: 1}}}}",
    ),
    Case(
        "plug-in param quoted",
        "error: run config: ops.trained_model.config.plugin_params.dropout = '0.5': expected a number >= 0 and < 1",
        config="ops: {trained_model: {config: {plugin_params: {dropout: '0.5'}}}}",
    ),
    Case(
        "plug-in params naming code",
        "error: run config: ops.trained_model.config.plugin_params.class_path = 'x:Y': unknown setting (known: "
        "deterministic, dropout, width); ops.trained_model.config.plugin_params.__import__ = 'x': unknown setting "
        "(known: deterministic, dropout, width)",
        config="ops: {trained_model: {config: {plugin_params: {class_path: 'x:Y', __import__: x}}}}",
    ),
    Case(
        "softmax param negative",
        "error: run config: ops.trained_model.config.plugin_params.l2 = -1: expected a number >= 0",
        config="ops: {trained_model: {config: {plugin: softmax, plugin_params: {l2: -1}}}}",
    ),
    Case(
        "two channels",
        "error: run config: ops.validated_images.config.channels = 2: not a channel count (expected 0 (infer from "
        "the data), 1 or 3)",
        config="ops: {validated_images: {config: {channels: 2}}}",
    ),
    Case(
        "zero max side",
        "error: run config: ops.validated_images.config.max_side = 0: expected an integer from 1 to 65535",
        config="ops: {validated_images: {config: {max_side: 0}}}",
    ),
    Case(
        "unknown top-level key",
        "error: run config: opz = {}: unknown setting (known: execution, loggers, ops, resources)",
        config="opz: {}",
    ),
    Case(
        "run config not YAML",
        "error: --config {config}: not valid YAML (line 1, column 43: expected ',' or '}', but got '<stream end>')",
        config="ops: {trained_model: {config: {epochs: 3}}",
    ),
    Case(
        "run config not a mapping",
        "error: --config {config}: expected a mapping of run config (ops: ...), not [{'epochs': 3}]",
        config="- epochs: 3",
    ),
    # Expectation profiles selected by the run config.
    Case(
        "negative quarantine fraction",
        "error: {profile}: dataset.max_quarantined_fraction = -0.1: expected a number from 0 to 1",
        profile="dataset: {max_quarantined_fraction: -0.1}",
    ),
    Case(
        "class size as text",
        "error: {profile}: dataset.min_images_per_class = '5': expected an integer >= 1",
        profile="dataset: {min_images_per_class: '5'}",
    ),
    Case(
        "contrast above 1",
        "error: {profile}: per_file.min_contrast = 2: expected a number from 0 to 1",
        profile="per_file: {min_contrast: 2}",
    ),
    Case(
        "unknown profile",
        f"error: validated_images config: expectations = 'nope': expectation profile not found (looked for "
        f"{PROFILES_DIR / 'nope.yaml'}); expected one of 'default', 'digits' or the path of a YAML file",
        config="ops: {validated_images: {config: {expectations: nope}}}",
    ),
    # Command-line values.
    Case(
        "deploy port",
        "error: command line: --port = -1: expected an integer from 1 to 65535",
        args=("deploy", "local", "--port", "-1"),
    ),
]


def _fill(line: str, **paths: Path) -> str:
    for name, path in paths.items():
        line = line.replace("{" + name + "}", str(path))
    return line


def _run_count() -> int:
    with dg.DagsterInstance.from_config(str(settings.dagster_home())) as instance:
        return len(instance.get_run_records())


@pytest.fixture
def isolated_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `mlops run` changes in this process (the dataset variable, the debug flag) is undone after the test."""
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    settings.export_environment()  # the session's home, as `mlops` itself sets it up


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_setting_is_one_error_line_before_anything_runs(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    isolated_cli: None,
) -> None:
    env, config, profile = tmp_path / "local.yaml", tmp_path / "run.yaml", tmp_path / "profile.yaml"
    if case.environment is not None:
        env.write_text(case.environment)
        monkeypatch.setattr(settings, "environment_file", lambda environment: env)
    if case.profile is not None:
        profile.write_text(case.profile)
        config.write_text(yaml.safe_dump({"ops": {"validated_images": {"config": {"expectations": str(profile)}}}}))
    else:
        config.write_text(case.config or "ops: {trained_model: {config: {epochs: 1}}}")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    runs_before = _run_count()

    code = main(list(case.args) or ["run", "--dataset", str(dataset), "--config", str(config)])

    captured = capsys.readouterr()
    assert (code, captured.err.splitlines()) == (
        BAD_SETTINGS,
        [_fill(case.line, env=env, config=config, profile=profile)],
    )
    assert captured.out == ""
    assert _run_count() == runs_before  # no run was created, so no asset ran


def test_the_project_settings_pass_the_checks() -> None:
    checked = load_environment_settings(settings.environment_file("local"), "local")
    assert (checked.server.port, checked.serving.api_workers, checked.promotion.floor) == (3030, 2, 0.8)
    assert check_before_run({"ops": {"trained_model": {"config": {"epochs": 2, "learning_rate": 0.01}}}}) is None


def test_libyaml_reads_settings_as_the_pure_python_parser_does() -> None:
    # Settings are parsed with libyaml for speed; what they mean must not depend on which parser read them.
    root = Path(settings.__file__).resolve().parent.parent
    documents = [
        path.read_text() for folder in ("deployments", "mlops_assets") for path in (root / folder).rglob("*.yaml")
    ]
    assert len(documents) == len(list(root.glob("deployments/**/*.yaml"))) + len(
        list(root.glob("mlops_assets/**/*.yaml"))
    )
    documents += [
        "a: yes\nb: on\nc: True\nd: 1.5e3\ne: 0x10\nf: ~\ng: 2020-01-01\nh: '07'\ni: [1, {j: k}]\nk: .inf\nl: 017\n",
        "base: &base {port: 1, host: x}\nstage:\n  <<: *base\n  port: 2\nt: !!str 12\nu: 2001-12-14 21:59:43.10\n",
        "\ufeffname: caf\u00e9\r\nlist:\r\n  - 1\r\n  - [2, 3]\r\n",
    ]
    for text in documents:
        assert load_settings_yaml(text) == yaml.load(text, Loader=_CoreSchemaLoader)  # noqa: S506 - a SafeLoader
    assert load_settings_yaml("a: yes\nb: on\nc: TRUE\n") == {"a": "yes", "b": "on", "c": True}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("server:\n  port:\t3030\n", "line 2, column 8"),
        ("a: b\tc\n", "line 1, column 5"),
        ("[a,\tb]\n", "line 1, column 4"),
    ],
)
def test_a_tab_between_tokens_is_refused_as_it_always_was(tmp_path: Path, text: str, where: str) -> None:
    # libyaml alone would read a tab between tokens as a space; settings were always read with PyYAML's parser,
    # which refuses it, naming the character.
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_yaml(path)
    assert str(refused.value) == f"{path}: not valid YAML ({where}: found character '\\t' that cannot start any token)"


def test_debug_shows_the_stack_trace_of_a_user_error(tmp_path: Path, isolated_cli: None) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("ops: {trained_model: {config: {epochs: -3}}}")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    with pytest.raises(ConfigError) as raised:
        main(["--debug", "run", "--dataset", str(dataset), "--config", str(config)])
    assert str(raised.value) == "run config: ops.trained_model.config.epochs = -3: expected an integer >= 1"
    assert os.environ[DEBUG_VARIABLE] == "1"


def test_the_real_command_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    # A real process: nothing but the one line reaches stderr (test_registry_file.py and test_cli_user_errors.py
    # run the preflight and a failing step the same way).
    home, path, dataset = tmp_path / "home", tmp_path / "run.yaml", tmp_path / "dataset"
    path.write_text("ops: [")
    dataset.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "BENTOML_HOME")}
    completed = subprocess.run(
        [MLOPS, "run", "--dataset", str(dataset), "--config", str(path)],
        env={**env, "MLOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == BAD_SETTINGS
    assert completed.stderr.splitlines() == [
        f"error: --config {path}: not valid YAML (line 1, column 7: expected the node content, but found "
        "'<stream end>')"
    ]
    assert completed.stdout == ""
    assert not (home / "dagster" / "history").exists()  # no Dagster instance, let alone a run


@pytest.mark.parametrize("environment", ["qa", "Local"])
@pytest.mark.parametrize("command", [["run"], ["deploy", "local"], ["models", "list"]], ids=" ".join)
def test_an_unknown_environment_is_named_by_its_variable_on_every_command(
    environment: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    isolated_cli: None,
) -> None:
    if command == ["run"]:
        (tmp_path / "dataset").mkdir()
        command = ["run", "--dataset", str(tmp_path / "dataset")]
    runs_before = _run_count()
    monkeypatch.setenv("MLOPS_ENV", environment)

    code = main(command)

    captured = capsys.readouterr()
    assert (code, captured.err.splitlines(), captured.out) == (
        BAD_SETTINGS,
        [
            f"error: environment: MLOPS_ENV = {environment!r}: expected one of 'local', 'staging', 'production' "
            "(deployments/)"
        ],
        "",
    )
    monkeypatch.delenv("MLOPS_ENV")
    assert _run_count() == runs_before

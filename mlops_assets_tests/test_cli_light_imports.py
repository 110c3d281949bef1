"""The commands that only read the registry or print help do not load the ML stack: each `mlops` call, and every CLI
call of the test suite, would otherwise pay seconds of imports (Dagster with its GCP integration, pandas, GX, torch,
BentoML) before doing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Packages (or modules) that none of the light commands use.
HEAVY = (
    "torch",
    "dagster",
    "dagster_gcp",
    "google.cloud.bigquery",
    "pandas",
    "great_expectations",
    "bentoml",
)
MARKER = "loaded heavy modules: "

# `mlops` as its console script runs it (`mlops_assets.cli:main`), then which of HEAVY are in sys.modules (a package
# counts when any of its modules is), as one JSON line on stderr after whatever the command printed.
PROBE = f"""
import json, sys
from mlops_assets.cli import main
sys.argv[0] = "mlops"
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = {HEAVY!r}
loaded = sorted(top for top in heavy if any(name == top or name.startswith(top + ".") for name in sys.modules))
sys.stdout.flush()
print({MARKER!r} + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""

HELP_START = "usage: mlops [-h] [--debug]"
MISSING_VERSION = "mlops models promote: error: the following arguments are required: version"


def run_probe(home: Path, *args: str) -> tuple[int, str, str, list[str]]:
    """(exit status, stdout, stderr without the probe's line, heavy modules loaded) of `mlops ARGS` on `home`."""
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV")}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**env, "MLOPS_HOME": str(home)},
        cwd=home.parent,  # as a user runs it, outside the project folder
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = completed.stderr.splitlines()
    assert lines and lines[-1].startswith(MARKER), completed.stderr
    return completed.returncode, completed.stdout, "\n".join(lines[:-1]), json.loads(lines[-1].removeprefix(MARKER))


@pytest.mark.parametrize(
    ("args", "code", "stdout_start", "stderr_lines"),
    [
        (("models", "list"), 0, "No model versions registered yet (environment local); run `mlops run`.\n", []),
        (("--help",), 0, HELP_START, []),
        (
            ("models", "show", "1"),
            1,
            "",
            ["error: There is no version 1 of image-classifier; see `mlops models list`."],
        ),
        (("datasets", "list"), 0, "dataset  source                 versions  latest  images  classes  recorded\n", []),
        (
            ("datasets", "show", "digits"),
            1,
            "",
            [
                "error: There is no dataset named 'digits' in the catalogue (known: sample); add it with `mlops "
                "datasets add digits SOURCE`, or pass a folder path."
            ],
        ),
        (("deployments",), 0, "staging: nothing deployed\nproduction: nothing deployed\n", []),
        (("models", "promote"), 2, "", ["usage: mlops models promote [-h] [--to {staging,production}] [--force]"]),
    ],
    ids=["models-list", "help", "models-show", "datasets-list", "datasets-show", "deployments", "argument-error"],
)
def test_light_commands_do_not_import_the_ml_stack(
    tmp_path: Path, args: tuple[str, ...], code: int, stdout_start: str, stderr_lines: list[str]
) -> None:
    status, stdout, stderr, loaded = run_probe(tmp_path / "home", *args)
    assert (status, stdout[: len(stdout_start)], stderr.splitlines()[: len(stderr_lines)]) == (
        code,
        stdout_start,
        stderr_lines,
    ), f"stdout: {stdout}\nstderr: {stderr}"
    if code == 2:
        assert stderr.splitlines()[-1] == MISSING_VERSION
    elif not stderr_lines:
        assert stderr == ""
    assert loaded == []


def test_the_probe_sees_the_heavy_imports_of_a_command_that_makes_them(tmp_path: Path) -> None:
    # `datasets add` opens the environment's dataset resource (Dagster, with its GCP integration): the probe must
    # report them, or the empty lists above would prove nothing.
    missing = tmp_path / "missing"
    status, stdout, stderr, loaded = run_probe(tmp_path / "home", "datasets", "add", "digits", str(missing))
    assert (status, stdout, stderr) == (
        2,
        "",
        f"error: command line: SOURCE = '{missing}': no such folder; pass a folder laid out as "
        "<root>/<label>/<image file>",
    )
    assert {"dagster", "dagster_gcp", "google.cloud.bigquery"} <= set(loaded)

"""`mlops monitor`'s own arguments: refused in one line before anything runs."""

import datetime as dt

import pytest

from mlops_assets.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--date", "30/11/2026"], "error: command line: --date = '30/11/2026': expected a day as YYYY-MM-DD"),
        (
            ["--date", "2025-12-31"],
            "error: command line: --date = '2025-12-31': expected a day from 2026-01-01 to {today} (UTC)",
        ),
        (["--version", "0"], "error: command line: --version = 0: expected an integer >= 1"),
    ],
)
def test_a_bad_argument_is_one_error_line_and_exit_code_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", *arguments]) == 2
    captured = capsys.readouterr()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert captured.err == message.format(today=today) + "\n"
    assert captured.out == ""


def test_an_unknown_version_is_one_error_line_and_exit_code_1(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    assert main(["monitor", "--version", "7"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: There is no version 7 of image-classifier; see `mlops models list`.\n"
    assert captured.out == ""

"""A mistyped option is reported with the usage of the (sub)command it was given to, and a close match is named."""

from __future__ import annotations

import argparse

import pytest

from mlops_assets.cli import BAD_SETTINGS, build_parser, main


def _leaf_commands(parser: argparse.ArgumentParser, path: list[str]):
    """Every runnable command path with its parser (`models compare`, `deploy`, ...)."""
    commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not commands:
        yield path, parser
        return
    for name, subparser in commands[0].choices.items():
        yield from _leaf_commands(subparser, [*path, name])


def _a_valid_value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    return "1" if action.type is int else "x"


def _valid_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Values for the command's positionals and required options, so that only the mistyped option is wrong."""
    arguments = []
    for action in parser._actions:
        if not action.option_strings:
            if action.nargs != "?":
                arguments.append(_a_valid_value(action))
        elif action.required:
            arguments += [action.option_strings[0]] + ([_a_valid_value(action)] if action.nargs != 0 else [])
    return arguments


COMMANDS = list(_leaf_commands(build_parser(), []))


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_an_unknown_option_is_reported_by_the_command_it_was_given_to(
    path: list[str], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*path, *_valid_arguments(parser), "--no-such-option"])
    assert stop.value.code == BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {parser.prog} "), err
    assert err.splitlines()[-1] == f"{parser.prog}: error: unrecognized arguments: --no-such-option"


@pytest.mark.parametrize(
    ("argv", "last_line"),
    [
        (
            ["run", "--datset", "digits"],
            "mlops run: error: unrecognized arguments: --datset digits (did you mean --dataset?)",
        ),
        (
            ["deploy", "local", "--prot=3001"],
            "mlops deploy: error: unrecognized arguments: --prot=3001 (did you mean --port?)",
        ),
        # Given before the subcommand: the top level reports it, and knows the option meant.
        (["--dbug", "run"], "mlops: error: unrecognized arguments: --dbug (did you mean --debug?)"),
        # An option of another level, given at this one.
        (
            ["models", "--debug", "list"],
            "mlops models: error: unrecognized arguments: --debug (--debug is an option of `mlops`: give it right "
            "after `mlops`)",
        ),
        (
            ["models", "list", "--dbug"],
            "mlops models list: error: unrecognized arguments: --dbug (did you mean --debug, an option of `mlops`?)",
        ),
    ],
)
def test_a_mistyped_option_names_the_option_meant(
    argv: list[str], last_line: str, capsys: pytest.CaptureFixture
) -> None:
    assert _refusal(argv, capsys) == last_line


@pytest.mark.parametrize(
    ("argv", "last_line"),
    [
        (["--debug", "models", "list", "extra"], "mlops models list: error: unrecognized arguments: extra"),
        # After `--` everything is a positional: no option is guessed (`--` alone is close to `--to`).
        (["models", "rollback", "--", "x"], "mlops models rollback: error: unrecognized arguments: -- x"),
        (["predict", "a.png", "--zzzzzz"], "mlops predict: error: unrecognized arguments: --zzzzzz"),
    ],
)
def test_an_argument_nothing_resembles_is_reported_without_a_guess(
    argv: list[str], last_line: str, capsys: pytest.CaptureFixture
) -> None:
    assert _refusal(argv, capsys) == last_line


def _refusal(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The last stderr line of `mlops ARGV`, which must exit with the bad-settings status."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == BAD_SETTINGS
    return capsys.readouterr().err.splitlines()[-1]

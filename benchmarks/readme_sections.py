"""README.md sections generated from committed benchmark results, between marker comments.

A section reads

    <!-- generated: NAME, from benchmarks/results/NAME.json by `COMMAND`; do not edit by hand -->
    ...
    <!-- end generated: NAME -->

and only the lines between the two markers are ever rewritten.
"""

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def _pattern(name: str) -> re.Pattern:
    return re.compile(
        rf"(^<!-- generated: {re.escape(name)}, [^\n]*-->\n)(.*?)(^<!-- end generated: {re.escape(name)} -->$)",
        re.M | re.S,
    )


def section(text: str, name: str) -> str:
    """The generated body of section `name` in `text`; ValueError when its markers are missing."""
    match = _pattern(name).search(text)
    if match is None:
        raise ValueError(f"README.md has no generated section '{name}': restore its two marker comments.")
    return match.group(2)


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name`'s body replaced by `body` (which ends with a newline)."""
    section(text, name)  # raises when the markers are missing
    return _pattern(name).sub(lambda match: match.group(1) + body + match.group(3), text, count=1)


def update_readme(name: str, body: str, readme: Path = README) -> None:
    """Rewrite section `name` of the README in place."""
    readme.write_text(replace_section(readme.read_text(), name, body))


def is_committed(results: Path) -> bool:
    """Whether `results` is the committed results folder, the only one the README may show."""
    return results.resolve() == RESULTS.resolve()


def refuse_a_partial_run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: tuple[str, ...], readme_part: str
) -> None:
    """Exit through `parser.error` when a measuring run with any of `settings` (argparse destinations; lists compared
    as sets) changed from its default would write to the committed folder: the committed results (and the README's
    `readme_part`) come from full runs only."""
    defaults = parser.parse_args([])

    def differs(name: str) -> bool:
        given, default = getattr(args, name), getattr(defaults, name)
        return set(given) != set(default) if isinstance(default, list) else given != default

    changed = [f"--{name.replace('_', '-')}" for name in settings if differs(name)]
    if changed and not args.report_only and is_committed(args.results):
        parser.error(
            f"a run with {', '.join(changed)} changed would replace the committed full run's results in {RESULTS}"
            f" and the README's {readme_part}; pass --results DIR to write it elsewhere."
        )

"""Write docs/cli.md from the commands' own --help (run after changing any option).

    .venv/bin/python scripts/cli_reference.py > docs/cli.md

tests/test_docs.py fails when docs/cli.md is out of date.
"""

from __future__ import annotations

import click
from click.testing import CliRunner

from opssecrets.cli import COMMANDS, cli


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="opssecrets", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output.rstrip()


def _commands() -> list[list[str]]:
    paths: list[list[str]] = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        paths.append([name])
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            paths.extend([name, sub] for sub in command.list_commands(ctx))
    return paths


def render() -> str:
    parts = [
        "# Command reference",
        "",
        "Generated from `--help` by `scripts/cli_reference.py`; `tests/test_docs.py` keeps it current.",
        "",
        "```",
        _help([]),
        "```",
    ]
    for path in _commands():
        parts += ["", f"## opssecrets {' '.join(path)}", "", "```", _help(path), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")

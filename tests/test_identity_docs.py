"""docs/onboarding.md names only commands and options that exist (checked against --help)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import PROJECT_ROOT

from opssecrets.cli import cli

DOC = PROJECT_ROOT / "docs" / "onboarding.md"


def doc_commands() -> list[list[str]]:
    """Every `opssecrets ...` invocation in the doc's code blocks and inline code."""
    text = DOC.read_text()
    found: list[list[str]] = []
    for match in re.finditer(r"opssecrets ((?:[a-z-]+)(?: [^`\n|#>]*)?)", text):
        words = [w.strip("\"'()\\") for w in match.group(1).split("|")[0].split()]
        words = [w for w in words if w]
        if words and not words[0].startswith("-") and words[0] not in ("commands", "hands", "is"):
            found.append(words)
    return found


def help_text(words: list[str]) -> str:
    runner = CliRunner()
    path: list[str] = []
    for word in words:
        if word.startswith("-"):
            break
        trial = runner.invoke(cli, [*path, word, "--help"])
        if trial.exit_code != 0:
            break
        path.append(word)
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, (words, result.output)
    return result.output


def test_the_doc_names_real_commands_and_options() -> None:
    commands = doc_commands()
    assert len(commands) >= 10
    for words in commands:
        if words[0] == "demo":
            continue
        text = help_text(words)
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in text, f"{' '.join(words)}: {option} is not an option of that command"


@pytest.mark.parametrize("command", ["identity new", "add-engineer", "doctor", "share"])
def test_the_two_command_path_is_in_the_doc(command: str) -> None:
    assert f"opssecrets {command}" in DOC.read_text()

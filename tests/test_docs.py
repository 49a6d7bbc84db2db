"""The docs say what the tool does: the CLI reference is regenerated from --help."""

from __future__ import annotations

import importlib.util
import re

from tests.conftest import PROJECT_ROOT


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("cli_reference", PROJECT_ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _words(text: str) -> list[str]:
    # click versions wrap help text differently; the words and their order are what must match
    return text.split()


def test_cli_reference_is_current() -> None:
    expected = _load_generator().render()
    actual = (PROJECT_ROOT / "docs" / "cli.md").read_text()
    assert _words(actual) == _words(expected), "docs/cli.md is stale: run 'python scripts/cli_reference.py > docs/cli.md'"


def test_readme_names_every_command() -> None:
    from opssecrets.cli import COMMANDS

    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [name for name in COMMANDS if not re.search(rf"`{re.escape(name)}[ `]", readme)]
    assert missing == []


def test_readme_documents_every_exit_code() -> None:
    from opssecrets import errors

    readme = (PROJECT_ROOT / "README.md").read_text()
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    for code in codes:
        assert re.search(rf"^\| {code} \|", readme, re.M), f"exit code {code} missing from the README"

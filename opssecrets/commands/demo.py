"""``opssecrets demo [DIR]``: a throwaway ops repository and the secrets lifecycle, run for real."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click


def command_available(name: str) -> bool:
    """True when ``name`` is a registered command whose module is in this build."""
    from opssecrets.cli import COMMANDS

    target = COMMANDS.get(name)
    if target is None:
        return False
    module_name, _, attribute = target.partition(":")
    try:
        if importlib.util.find_spec(module_name) is None:
            return False
        return hasattr(importlib.import_module(module_name), attribute)
    except ImportError:
        return False


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@click.command("demo")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path | None) -> int:
    """Build a throwaway ops repository (in DIRECTORY, new or empty, or a new temp dir) and run the lifecycle.

    Each command is printed before it runs: add an engineer, show access, rotate a token,
    show status, remove the engineer, show the exposed keys, run the guard on a planted
    token. Keys are generated in the demo directory; your keyring and ~/.config are untouched.
    """
    from opssecrets.demo import run_demo

    run_demo(directory, _write, command_available)
    return 0

"""``opssecrets demo [DIR]``: a throwaway ops repository and the secrets lifecycle, run for real."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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

    run_demo(directory, _write)
    return 0

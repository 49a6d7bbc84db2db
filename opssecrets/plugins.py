"""age plugins: which ``age-plugin-NAME`` programs sops will find, and refusing a change that needs a missing one.

sops, like age, runs ``age-plugin-NAME`` from PATH to wrap a data key for an
``age1NAME1...`` recipient (and to unwrap it with an ``AGE-PLUGIN-NAME-1...`` identity).
The sops child gets our PATH, so our PATH is where we look.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from opssecrets.errors import EnvironmentProblem
from opssecrets.keys import plugin_of_recipient

PROGRAM_PREFIX = "age-plugin-"


def plugin_program(name: str) -> str | None:
    """Where ``age-plugin-NAME`` is on PATH, or None."""
    return shutil.which(PROGRAM_PREFIX + name)


def plugins_on_path() -> list[tuple[str, str]]:
    """Every ``age-plugin-NAME`` on PATH as ``(NAME, path)``, the first one found per name."""
    found: dict[str, str] = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = sorted(Path(folder or ".").iterdir())
        except OSError:
            continue
        for entry in entries:
            name = entry.name[len(PROGRAM_PREFIX) :]
            if entry.name.startswith(PROGRAM_PREFIX) and name and name not in found and entry.is_file() and os.access(entry, os.X_OK):
                found[name] = str(entry)
    return sorted(found.items())


def require_plugins(uses: Iterable[tuple[str, str]]) -> None:
    """Refuse, before anything changes, when a recipient's plugin is missing from PATH.

    ``uses`` holds ``(what, recipient)`` pairs, ``what`` saying what is about to be done for
    that recipient ("re-encrypting secrets/x.yaml"). The error names the plugin program.
    """
    for what, recipient in uses:
        name = plugin_of_recipient(recipient)
        if name is not None and plugin_program(name) is None:
            raise EnvironmentProblem(
                f"{what} for the plugin recipient {recipient[:24]}... needs {PROGRAM_PREFIX}{name}, "
                f"which is not on PATH; install {PROGRAM_PREFIX}{name} and run this again (nothing was changed)"
            )

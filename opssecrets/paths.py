"""Every path opssecrets keeps state in, named once (like pipx's ``paths.py``).

Committed with the repository: ``.sops.yaml`` and the ledger. Private to one checkout, in
its state folder inside the git dir (so git never sees it, also for worktrees): the change
lock, the ledger lock, staging folders, a rotation's pending note, the fingerprint key and
the last exposure audit's findings. Private to the user: the crash log.
"""

from __future__ import annotations

import os
from pathlib import Path

from opssecrets import git

CONFIG_NAME = ".sops.yaml"
LEDGER_PATH = ".opssecrets/ledger.json"

# in the state folder
CHANGE_LOCK = "lock"
LEDGER_LOCK = "ledger.lock"
STAGE_PREFIX = "stage-"  # transaction.apply's copies (ciphertext only), for every changing command
ROTATION_PENDING = "rotation-pending.json"
FINGERPRINT_KEY = "fingerprint.key"
EXPOSURE_FINDINGS = "exposure.json"

_NO_GIT_STATE = ".opssecrets/run"


def state_dir(root: Path) -> Path:
    """Where locks and staging live: inside the git dir (invisible to git, also for worktrees,
    where ``.git`` is a file), else ``.opssecrets/run/``. Always on the repository's own
    filesystem, so a staged file can be renamed over the original atomically."""
    git_dir = root / ".git"
    if git_dir.is_dir():
        return git_dir / "opssecrets"
    if git_dir.is_file():
        absolute = git.absolute_git_dir(root)
        if absolute is not None:
            return absolute / "opssecrets"
    return root / _NO_GIT_STATE


def crash_log() -> Path:
    """Where an unexpected error's frames go: the user's XDG state folder, never the repository."""
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "opssecrets" / "crash.log"

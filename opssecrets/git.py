"""Every git call: finding the repository, listing its files, reading the index."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from opssecrets.errors import BadInput


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in ("GIT_CONFIG_NOSYSTEM",)}
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return subprocess.CompletedProcess(["git", *args], 127, b"", b"git not available")


def toplevel(start: Path) -> Path | None:
    """The work tree root above ``start``, or None outside git (or without git)."""
    proc = _git(["rev-parse", "--show-toplevel"], start)
    if proc.returncode != 0:
        return None
    return Path(proc.stdout.decode().strip())


def find_repo_root(explicit: Path | None) -> Path:
    """``--repo`` if given, else the git top level, else the nearest folder with ``.sops.yaml``."""
    if explicit is not None:
        if not explicit.is_dir():
            raise BadInput(f"--repo {explicit}: no such directory")
        return explicit.resolve()
    cwd = Path.cwd()
    top = toplevel(cwd)
    if top is not None:
        return top
    for folder in (cwd, *cwd.parents):
        if (folder / ".sops.yaml").is_file():
            return folder
    raise BadInput("not inside a git repository and no .sops.yaml above here: run it in your ops repo or pass --repo DIR")


def is_git_repo(root: Path) -> bool:
    return (root / ".git").exists()


def listed_files(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files (relative, posix), or None outside git."""
    if not is_git_repo(root):
        return None
    proc = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root)
    if proc.returncode != 0:
        return None
    seen = dict.fromkeys(p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p)
    return list(seen)


def tracked_files(root: Path) -> list[str]:
    proc = _git(["ls-files", "-z"], root)
    if proc.returncode != 0:
        raise BadInput(f"{root} is not a git repository: --all and --staged need git")
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def state_dir(root: Path) -> Path:
    """Where locks and staging live: inside ``.git`` (invisible to git), else ``.opssecrets/``."""
    git_dir = root / ".git"
    base = git_dir if git_dir.is_dir() else root / ".opssecrets"
    return base / "opssecrets"


def head_commit(root: Path) -> str | None:
    """The commit HEAD points at, or None (no git, no commit yet)."""
    if not is_git_repo(root):
        return None
    proc = _git(["rev-parse", "--verify", "-q", "HEAD"], root)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def file_history_patch(root: Path, relpath: str, since: str | None = None, after_commit: str | None = None) -> str:
    """The patches that changed ``relpath``, as text: committed ones (those after
    ``after_commit`` when it is an ancestor of HEAD, else those ``since`` an ISO time, else
    all), then the uncommitted change against HEAD. Empty outside git."""
    if not is_git_repo(root):
        return ""
    args = ["log", "--no-color", "--format=commit %H", "-p", "-U0", "--no-ext-diff"]
    if after_commit and _git(["merge-base", "--is-ancestor", after_commit, "HEAD"], root).returncode == 0:
        args.append(f"{after_commit}..HEAD")
    elif since:
        args.append(f"--since={since}")
    log = _git([*args, "--", relpath], root)
    work = _git(["diff", "--no-color", "-U0", "--no-ext-diff", "HEAD", "--", relpath], root)
    parts = [proc.stdout.decode("utf-8", "replace") for proc in (log, work) if proc.returncode == 0]
    return "\n".join(parts)

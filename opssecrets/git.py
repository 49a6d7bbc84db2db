"""Every git call: finding the repository, listing its files, reading the index."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from opssecrets.errors import BadInput


def git_env() -> dict[str, str]:
    """The environment for a git child: ours without GIT_* overrides and without sops' variables.

    ``SOPS_AGE_KEY`` may hold the operator's identity and ``SSH_TO_AGE_PASSPHRASE`` an SSH
    key's passphrase; git, its hooks and its credential helpers have no use for them.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("GIT_") or k in ("GIT_CONFIG_NOSYSTEM",)) and not k.startswith("SOPS_") and k != "SSH_TO_AGE_PASSPHRASE"
    }


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = git_env()
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


def absolute_git_dir(root: Path) -> Path | None:
    """The git dir of the repository at ``root`` (for a worktree: not ``root / ".git"``)."""
    proc = _git(["rev-parse", "--absolute-git-dir"], root)
    return Path(proc.stdout.decode().strip()) if proc.returncode == 0 else None


def staged_changes(root: Path, pathspecs: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """What the next commit changes: ``(status, new mode, new blob sha, path)`` per file.

    Renames are split into a delete and an add, so the new path is read like any added
    file; ``status`` ``D`` means deleted in the index (mode and sha are zeros).
    """
    args = ["-c", "core.quotepath=off", "diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-ext-diff"]
    if pathspecs:
        args += ["--", *pathspecs]
    proc = _git(args, root)
    if proc.returncode != 0:
        raise BadInput(f"{root} is not a git repository (or git failed): --staged needs git")
    parts = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    out: list[tuple[str, str, str, str]] = []
    for i in range(0, len(parts) - 1, 2):
        header, path = parts[i], parts[i + 1]
        fields = header.lstrip(":").split()
        if len(fields) < 5 or not path:
            continue
        out.append((fields[4][:1], fields[1], fields[3], path))
    return out


def index_entry(root: Path, rel: str) -> tuple[str, str] | None:
    """``(mode, blob sha)`` of ``rel`` in the index (stage 0), or None if it is not there."""
    proc = _git(["ls-files", "-s", "-z", "--", rel], root)
    if proc.returncode != 0 or not proc.stdout:
        return None
    meta, _, _ = proc.stdout.decode("utf-8", "surrogateescape").partition("\t")
    fields = meta.split()
    return (fields[0], fields[1]) if len(fields) >= 3 else None


def read_blobs(root: Path, shas: list[str]) -> dict[str, bytes]:
    """The content of each blob, in one ``git cat-file --batch`` process."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    env = git_env()
    try:
        proc = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=root,
            input=("\n".join(wanted) + "\n").encode("ascii"),
            capture_output=True,
            check=False,
            env=env,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BadInput(f"git cat-file could not read the index in {root} ({exc.__class__.__name__})") from exc
    out: dict[str, bytes] = {}
    data = proc.stdout
    pos = 0
    for sha in wanted:
        newline = data.find(b"\n", pos)
        if newline < 0:
            break
        header = data[pos:newline].split()
        pos = newline + 1
        if len(header) == 3 and header[1] != b"missing":
            size = int(header[2])
            out[sha] = data[pos : pos + size]
            pos += size + 1
    return out


def grep_files(root: Path, literal: str, glob: str, *, cached: bool = False) -> list[str]:
    """Tracked files matching ``glob`` that contain ``literal`` (the index's content if ``cached``)."""
    args = ["-c", "core.quotepath=off", "grep", "-l", "-z", "-F", "-e", literal]
    if cached:
        args.append("--cached")
    proc = _git([*args, "--", glob], root)
    if proc.returncode != 0:  # 1: nothing found; other: not a repository
        return []
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def head_commit(root: Path) -> str | None:
    """The commit HEAD points at, or None (no git, no commit yet)."""
    if not is_git_repo(root):
        return None
    proc = _git(["rev-parse", "--verify", "-q", "HEAD"], root)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def is_shallow(root: Path) -> bool:
    """Whether the clone's history is cut off (``git clone --depth N``): older commits, and
    the recipients they removed, are not here to read."""
    if not is_git_repo(root):
        return False
    proc = _git(["rev-parse", "--is-shallow-repository"], root)
    return proc.returncode == 0 and proc.stdout.strip() == b"true"


def history_complete_since(root: Path, commit: str | None) -> bool:
    """Whether every commit from ``commit`` to HEAD is here: always in a full clone; in a
    shallow one only when ``commit`` itself is present and an ancestor of HEAD."""
    if not is_shallow(root):
        return True
    return commit is not None and _git(["merge-base", "--is-ancestor", commit, "HEAD"], root).returncode == 0


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


# -- a base commit, for `opssecrets check --base REF` -------------------------------------------


def is_commit(root: Path, ref: str) -> bool:
    """Whether ``ref`` names a commit here (``ref`` never starts with ``-``: callers check)."""
    proc = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    return proc.returncode == 0


def show_file(root: Path, ref: str, rel: str) -> bytes | None:
    """``rel`` as committed at ``ref``, or None when it does not exist there."""
    proc = _git(["cat-file", "blob", f"{ref}:{rel}"], root)
    return proc.stdout if proc.returncode == 0 else None


def files_at(root: Path, ref: str | None, folder: str) -> dict[str, tuple[str, str]]:
    """Path -> (mode, blob sha) of the files directly in ``folder`` at commit ``ref`` (None: the index)."""
    if ref is None:
        proc = _git(["ls-files", "-s", "-z", "--", f"{folder}/"], root)
    else:
        proc = _git(["ls-tree", "-z", ref, "--", f"{folder}/"], root)
    if proc.returncode != 0:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for entry in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()  # ls-tree: mode type sha; ls-files -s: mode sha stage
        if path and len(fields) >= 3 and path.count("/") == folder.count("/") + 1:
            out[path] = (fields[0], fields[2] if ref is not None else fields[1])
    return out


def changed_files(root: Path, ref: str, pathspecs: list[str]) -> list[str]:
    """Files that differ between ``ref`` and the working tree, plus untracked ones (for ``diff``)."""
    specs = ["--", *pathspecs] if pathspecs else []
    diff = _git(["-c", "core.quotepath=off", "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", ref, *specs], root)
    if diff.returncode != 0:
        raise BadInput(f"git diff {ref} failed: {diff.stderr.decode('utf-8', 'replace').strip()[:200]}")
    untracked = _git(["-c", "core.quotepath=off", "ls-files", "-z", "--others", "--exclude-standard", *specs], root)
    names = diff.stdout.decode("utf-8", "surrogateescape").split("\0") + untracked.stdout.decode("utf-8", "surrogateescape").split("\0")
    return sorted({name for name in names if name})
# -- history, for `opssecrets exposure` ----------------------------------------------------------


def history_blobs(root: Path) -> list[tuple[str, str, str]]:
    """``(commit, path, blob)`` for every file version a commit of any ref introduced, newest
    commit first. Merges are diffed against each parent (``-m``), so a blob a merge made
    (a conflict resolution) is listed too; deletions are left out."""
    args = ["-c", "core.quotepath=off", "log", "--all", "-m", "--raw", "--no-abbrev", "--no-renames", "-z", "--format=%x01%H"]
    proc = _git(args, root)
    if proc.returncode != 0:
        if b"does not have any commits" in proc.stderr or not proc.stderr.strip():
            return []
        raise BadInput(f"git log failed in {root}: {proc.stderr.decode('utf-8', 'replace').strip()[:200]}")
    out: list[tuple[str, str, str]] = []
    commit = ""
    fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    i = 0
    while i < len(fields):
        field = fields[i].lstrip("\n")
        if field.startswith("\x01"):
            commit = field[1:].strip()
            i += 1
            continue
        if field.startswith(":") and i + 1 < len(fields):
            meta = field[1:].split()
            path = fields[i + 1]
            i += 2
            if len(meta) >= 5 and meta[4] != "D" and meta[1].startswith("100") and commit:
                out.append((commit, path, meta[3]))
            continue
        i += 1
    return out


def shallow_boundary(root: Path) -> list[str]:
    """The commits a shallow clone cut history at (their parents are missing)."""
    proc = _git(["rev-parse", "--git-path", "shallow"], root)
    if proc.returncode != 0:
        return []
    path = Path(proc.stdout.decode().strip())
    path = path if path.is_absolute() else root / path
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob (sha1 repositories), without running git."""
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()

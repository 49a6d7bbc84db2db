"""Where the guard's files come from: named paths, the git index, or every tracked file.

Each source yields :class:`Item` values: a repository-relative path and either its bytes
or a note saying why it was not read (a symlink, deleted in the index, unreadable...).
Paths and ``--all`` read the working tree; ``--staged`` reads the index, so a file fixed
but not re-staged is still reported.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opssecrets import git
from opssecrets.errors import BadInput

SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"


@dataclass(frozen=True)
class Item:
    rel: str
    data: bytes | None = None  # None: read lazily from the working tree (``--all``)
    note: str | None = None  # set: not checked, and why
    size: int = 0


def stat_worktree(root: Path, rel: str) -> Item:
    """One working-tree file's size, or the note saying why it is not checked; never follows a symlink."""
    try:
        info = os.lstat(root / rel)
    except FileNotFoundError:
        return Item(rel, note="deleted in the working tree; not checked")
    except OSError as exc:
        return Item(rel, note=f"cannot be read ({exc.strerror}); not checked")
    if stat.S_ISLNK(info.st_mode):
        return Item(rel, note="is a symlink; not followed (its target is checked where it is tracked)")
    if not stat.S_ISREG(info.st_mode):
        return Item(rel, note="is not a regular file; not checked")
    return Item(rel, size=info.st_size)


def read_worktree(root: Path, rel: str) -> Item:
    """One working-tree file with its bytes (or the note); never raises."""
    item = stat_worktree(root, rel)
    if item.note is not None:
        return item
    try:
        with open(root / rel, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Item(rel, note=f"cannot be read ({exc.strerror}); not checked")
    return Item(rel, data, size=len(data))


def _relative(root: Path, raw: str) -> str:
    absolute = Path(raw) if os.path.isabs(raw) else Path.cwd() / raw
    normal = Path(os.path.normpath(absolute))
    for base in (root, root.resolve()):
        try:
            return normal.relative_to(base).as_posix()
        except ValueError:
            continue
    raise BadInput(f"{raw} is outside the repository {root}; check only files inside it (or pass --repo)")


def from_paths(root: Path, raw_paths: list[str]) -> list[Item]:
    """The named files (what pre-commit passes); a folder means the files git lists under it."""
    items: list[Item] = []
    listed: list[str] | None = None
    for raw in raw_paths:
        rel = _relative(root, raw)
        full = root / rel
        if rel in ("", "."):
            rel = ""
        if full.is_dir() and not full.is_symlink():
            if listed is None:
                listed = git.listed_files(root) or _walk(root)
            prefix = f"{rel}/" if rel else ""
            items.extend(stat_worktree(root, p) for p in listed if p.startswith(prefix))
            continue
        if not full.exists() and not full.is_symlink():
            raise BadInput(f"{raw}: no such file; check the path")
        items.append(read_worktree(root, rel))
    seen: dict[str, Item] = {}
    for item in items:
        seen.setdefault(item.rel, item)
    return list(seen.values())


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        found.extend(Path(folder, name).relative_to(root).as_posix() for name in files)
    return sorted(found)


def from_index(root: Path, raw_paths: list[str]) -> list[Item]:
    """What is staged: the index's content of every added or modified file."""
    specs = [_relative(root, raw) or "." for raw in raw_paths] if raw_paths else None
    changes = git.staged_changes(root, specs)
    items: list[Item] = []
    wanted: list[tuple[str, str]] = []
    for status, mode, sha, rel in changes:
        if status == "D":
            items.append(Item(rel, note="deleted in the index; nothing to check"))
        elif mode == SYMLINK_MODE:
            items.append(Item(rel, note="is a symlink; not followed (its target is checked where it is tracked)"))
        elif mode == GITLINK_MODE:
            items.append(Item(rel, note="is a submodule; check it in its own repository"))
        else:
            wanted.append((rel, sha))
    blobs = git.read_blobs(root, [sha for _, sha in wanted])
    for rel, sha in wanted:
        data = blobs.get(sha)
        if data is None:
            items.append(Item(rel, note="could not be read from the index; not checked"))
        else:
            items.append(Item(rel, data, size=len(data)))
    return sorted(items, key=lambda item: item.rel)


def from_tracked(root: Path) -> list[Item]:
    """Every tracked file, stat'ed only; the scanner reads them (possibly in worker processes)."""
    return [stat_worktree(root, rel) for rel in git.tracked_files(root)]


Reader = Callable[[str], bytes | None]


def worktree_reader(root: Path) -> Reader:
    def read(rel: str) -> bytes | None:
        item = read_worktree(root, rel)
        return item.data

    return read


def index_reader(root: Path, fallback: Reader | None = None) -> Reader:
    """Read a file as staged; one the index does not have is None (or ``fallback``'s answer)."""

    def read(rel: str) -> bytes | None:
        entry = git.index_entry(root, rel)
        if entry is None:
            return fallback(rel) if fallback is not None else None
        if entry[0] in (SYMLINK_MODE, GITLINK_MODE):
            return None
        return git.read_blobs(root, [entry[1]]).get(entry[1])

    return read

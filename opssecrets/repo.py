"""One ops repository: its root, its ``.sops.yaml``, its sops files, and sops bound to it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from opssecrets import git, paths
from opssecrets.errors import BadInput
from opssecrets.paths import CONFIG_NAME
from opssecrets.secretfile import NotASopsFile, SecretFile, looks_like_sops_file, read_secret_file
from opssecrets.sops import Sops

_SKIP_DIRS = {".git", ".opssecrets", "node_modules", "result", ".direnv", "__pycache__", ".venv"}


@dataclass(frozen=True)
class Repo:
    root: Path

    @classmethod
    def locate(cls, explicit: Path | None, *, config_symlink_ok: bool = False) -> Repo:
        """The repository at ``explicit`` or around the current folder.

        A symlinked ``.sops.yaml`` is refused here (BadInput) for every command but the guard,
        which reports it as a finding instead."""
        repo = cls(git.find_repo_root(explicit))
        if not config_symlink_ok:
            _ = repo.config_path
        return repo

    @property
    def config_path(self) -> Path:
        """``.sops.yaml``; a symlink there is refused (BadInput), never followed."""
        from opssecrets.rules import refuse_symlink

        return refuse_symlink(self.root / CONFIG_NAME)

    def require_config(self) -> Path:
        if not self.config_path.is_file():
            raise BadInput(f"no {CONFIG_NAME} in {self.root}: run 'opssecrets init' first, or pass --repo DIR")
        return self.config_path

    @cached_property
    def sops(self) -> Sops:
        from opssecrets.identity import identity_env

        return Sops.at(self.root, self.config_path, identity_env())

    @property
    def state_dir(self) -> Path:
        return paths.state_dir(self.root)

    def relpath(self, path: Path) -> str:
        """``path`` relative to the root, posix; refuses paths outside the repository."""
        absolute = path if path.is_absolute() else Path.cwd() / path
        try:
            return Path(os.path.normpath(absolute)).relative_to(self.root).as_posix()
        except ValueError as exc:
            raise BadInput(f"{path} is outside the repository {self.root}") from exc

    def candidate_files(self) -> list[str]:
        """Every file that could be a secret file (relative posix paths), git-aware."""
        listed = git.listed_files(self.root)
        if listed is not None:
            return [p for p in listed if (self.root / p).is_file() and p != CONFIG_NAME]
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            for name in files:
                rel = Path(folder, name).relative_to(self.root).as_posix()
                if rel != CONFIG_NAME:
                    found.append(rel)
        return sorted(found)

    def secret_files(self, only: list[str] | None = None) -> list[SecretFile]:
        """The sops-encrypted files in the repository (or among ``only``), metadata parsed."""
        out: list[SecretFile] = []
        for rel in only if only is not None else self.candidate_files():
            path = self.root / rel
            try:
                with path.open("rb") as handle:
                    head = handle.read(1 << 20)
            except OSError:
                continue
            if not looks_like_sops_file(head):
                continue
            try:
                out.append(read_secret_file(path))
            except NotASopsFile:
                continue
        return out


@dataclass
class RepoContext:
    """Where the repository comes from, resolved once per command: the ``--repo`` value, and
    the repository it names, located on first use and kept. The CLI builds one per run and
    hands it to every command (``pass_repo_context`` in ``opssecrets/commands/common.py``)."""

    explicit: Path | None = None
    _located: Repo | None = field(default=None, init=False, repr=False)

    def repo(self, *, config_symlink_ok: bool = False) -> Repo:
        """The repository at ``--repo`` or around the working folder (:meth:`Repo.locate`);
        ``config_symlink_ok`` only for the guard, which reports a symlinked ``.sops.yaml``
        as a finding instead of refusing it."""
        if self._located is None:
            self._located = Repo.locate(self.explicit, config_symlink_ok=True)
        if not config_symlink_ok:
            _ = self._located.config_path  # refuses a symlinked .sops.yaml (BadInput)
        return self._located

    def new_root(self) -> Path:
        """The folder ``init`` makes a repository of, before any ``.sops.yaml`` exists:
        ``--repo``, else the working folder, as given (no git or ``.sops.yaml`` lookup)."""
        root = (self.explicit or Path.cwd()).resolve()
        if not root.is_dir():
            raise BadInput(f"{root}: no such directory")
        return root

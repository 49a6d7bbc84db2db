"""Which file holds KEY: the one answer ``rotate``, ``verify`` and ``share`` give.

``--file`` is read as the shell sees it: relative to the working folder when that names a
file inside the repository (what tab completion gives in a sub-folder), else relative to the
repository root (the form opssecrets prints in every message, so a copied path works from
any folder); never outside the repository. Without ``--file``: the policy's default file
(``secrets/secrets.yaml``) if it holds the key, else the one sops file that does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput
from opssecrets.repo import Repo
from opssecrets.secretfile import NotASopsFile, SecretFile, looks_like_sops_file, read_secret_file


@dataclass(frozen=True)
class FoundSecret:
    relpath: str  # relative to the repository root, posix
    key: str  # as sops-nix names it: nested keys joined with '/'
    secret_file: SecretFile


def find_secret(repo: Repo, key: str, file: str | Path | None, default_file: str | None) -> FoundSecret:
    """The file holding ``key``: ``file`` if given (see the module docstring), else
    ``default_file`` if it holds the key, else the one encrypted file that does."""
    key = key.strip("/")
    if not key:
        raise BadInput("empty secret key name; give it as it appears in the file, nested with '/' (slack/bot_token)")
    if file is not None:
        relpath = file_relpath(repo, file)
        secret_file = _read_sops_file(repo, relpath)
        if secret_file is None:
            raise BadInput(f"--file {relpath} is not a sops-encrypted file; encrypt it with sops first")
        _check_key(secret_file, relpath, key)
        return FoundSecret(relpath, key, secret_file)
    default = _read_sops_file(repo, default_file) if default_file else None
    if default is not None and default_file is not None and key in default.key_paths():
        _check_key(default, default_file, key)
        return FoundSecret(default_file, key, default)
    holders = [sf for sf in repo.secret_files() if key in sf.key_paths()]
    if len(holders) == 1:
        relpath = repo.relpath(holders[0].path)
        _check_key(holders[0], relpath, key)
        return FoundSecret(relpath, key, holders[0])
    if len(holders) > 1:
        names = ", ".join(sorted(repo.relpath(sf.path) for sf in holders))
        raise BadInput(f"{key!r} is in {len(holders)} files ({names}); pass --file to say which")
    if default is not None:
        raise BadInput(
            f"no key {key!r} in {default_file} or any other encrypted file ({default_file} holds: {_key_list(default.key_paths())})"
        )
    raise BadInput(f"no secret file has a key {key!r}; name it as sops-nix does (nested with '/': slack/bot_token) or pass --file")


def file_relpath(repo: Repo, file: str | Path) -> str:
    """``--file`` as a path relative to the root: from the working folder if a file is there
    inside the repository, else from the root; refused outside the repository or missing."""
    path = Path(file)
    # an absolute path outside the repository is refused by relpath
    relpath = repo.relpath(path) if path.is_absolute() else _from_working_folder(repo, path) or _from_root(repo, path, file)
    if not (repo.root / relpath).is_file():
        where = str(repo.root) if Path.cwd().resolve() == repo.root else f"{Path.cwd()} or {repo.root}"
        raise BadInput(f"--file {file} does not exist (looked in {where}); check the path")
    return relpath


def _from_working_folder(repo: Repo, path: Path) -> str | None:
    if not (Path.cwd() / path).is_file():
        return None
    try:
        return repo.relpath(path)
    except BadInput:  # a file outside the repository: the root may still have one of that name
        return None


def _from_root(repo: Repo, path: Path, given: str | Path) -> str:
    relpath = Path(os.path.normpath(path)).as_posix()
    if relpath == ".." or relpath.startswith("../"):
        raise BadInput(f"{given} is outside the repository {repo.root}")
    return relpath


def _read_sops_file(repo: Repo, relpath: str) -> SecretFile | None:
    path = repo.root / relpath
    try:
        head = path.read_bytes()[: 1 << 20]
    except OSError:
        return None
    if not looks_like_sops_file(head):
        return None
    try:
        return read_secret_file(path)
    except NotASopsFile:
        return None


def _addresses_a_value(secret_file: SecretFile, key: str) -> bool:
    """``key`` split on '/' leads through mappings to one value, as sops-nix reads it."""
    node: object = secret_file.tree
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return not isinstance(node, (dict, list))


def _check_key(secret_file: SecretFile, relpath: str, key: str) -> None:
    keys = secret_file.key_paths()
    if _addresses_a_value(secret_file, key):
        return
    if key in keys:
        raise BadInput(
            f"{key!r} in {relpath} is a list item or a key holding '/', which sops-nix cannot name; change it with 'sops edit {relpath}'"
        )
    raise BadInput(f"no key {key!r} in {relpath} (its keys: {_key_list(keys)}); check the name, nested keys use '/'")


def _key_list(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "") if keys else "(none)"

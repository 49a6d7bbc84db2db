"""One secret's current value, encrypted with ``age`` to one recipient, for a one-off hand-over.

The value goes from ``sops decrypt --extract`` (captured) to ``age -r RECIPIENT -a`` on its
stdin; it is never written to a file, put in argv, or shown in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, ToolFailed
from opssecrets.keys import check_age_recipient
from opssecrets.plugins import require_plugins
from opssecrets.repo import Repo
from opssecrets.sops import child_env, find_age, run, stderr_summary


def resolve_recipient(repo: Repo, to: str) -> tuple[str, str]:
    """``(label, age recipient)`` for ``--to``: a recipient name in ``.sops.yaml``, or an ``age1...`` recipient."""
    if to.startswith("age1"):
        return to, check_age_recipient(to)
    from opssecrets.sopsconfig import SopsConfig

    recipient = SopsConfig.load(repo.require_config()).find(to)
    if recipient.key_type != "age":
        raise BadInput(f"{recipient.label} is not an age recipient; share encrypts with age only")
    return recipient.label, recipient.key


def find_key_file(repo: Repo, key: str, file: Path | None) -> str:
    """The secret file (relative path) holding ``key``: ``file`` if given, else the only one that has it."""
    if file is not None:
        rel = repo.relpath(file)
        if not (repo.root / rel).is_file():
            raise BadInput(f"{rel} does not exist; check --file")
        found = repo.secret_files([rel])
        if not found:
            raise BadInput(f"{rel} is not a sops-encrypted file; check --file")
        if key not in found[0].key_paths():
            raise BadInput(f"{rel} has no key {key!r}; 'opssecrets access' lists the keys of each file")
        return rel
    holders = [repo.relpath(sf.path) for sf in repo.secret_files() if key in sf.key_paths()]
    if not holders:
        raise BadInput(f"no secret file has a key {key!r}; name it as sops-nix does (e.g. slack/bot_token) or pass --file")
    if len(holders) > 1:
        raise BadInput(f"{key!r} is in {len(holders)} files ({', '.join(sorted(holders))}); pick one with --file")
    return holders[0]


@dataclass(frozen=True)
class SharedSecret:
    file: str
    key: str
    label: str
    recipient: str
    armored: bytes


def share_secret(repo: Repo, key: str, to: str, file: Path | None = None) -> SharedSecret:
    """Encrypt the current value of ``key`` to ``to`` with age, ASCII-armored."""
    label, recipient = resolve_recipient(repo, to)
    rel = find_key_file(repo, key, file)
    age = find_age()  # before decrypting: fail early without holding a value
    require_plugins([(f"sharing {key} with {label}", recipient)])  # age runs age-plugin-NAME for it
    value = repo.sops.extract(rel, key)
    proc = run(age, ("-r", recipient, "-a"), cwd=repo.root, stdin=value, env=child_env(), redact=(value,))
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----"):
        raise ToolFailed(
            f"age could not encrypt to {label} (exit {proc.returncode}): {stderr_summary(proc.stderr)}",
            stderr_summary(proc.stderr),
        )
    return SharedSecret(rel, key, label, recipient, proc.stdout)

"""One secret's current value, encrypted with ``age`` to one recipient, for a one-off hand-over.

The value goes from ``sops decrypt --extract`` (captured) to ``age -r RECIPIENT -a`` on its
stdin; it is never written to a file, put in argv, or shown in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, ToolFailed
from opssecrets.identity import operator_name
from opssecrets.keys import check_age_recipient
from opssecrets.ledger import mark_exposed
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
    outside_rule: bool = False


def rule_readers(repo: Repo, rel: str) -> frozenset[str]:
    """The age recipients meant to read ``rel``: its creation rule's, or, where no rule covers
    it, those its own metadata lists."""
    from opssecrets.rules import matching_rule
    from opssecrets.sopsconfig import SopsConfig

    rule = matching_rule(SopsConfig.load(repo.require_config()).rules, rel)
    if rule is not None:
        return frozenset(rule.age_recipients)
    return frozenset(k for sf in repo.secret_files([rel]) for k in sf.metadata.age_recipients)


def share_secret(repo: Repo, key: str, to: str, file: Path | None = None, *, outside_rule: bool = False) -> SharedSecret:
    """Encrypt the current value of ``key`` to ``to`` with age, ASCII-armored.

    A recipient the file's rule does not include is refused unless ``outside_rule``; then the
    hand-over is recorded in the ledger as an exposure of ``key`` to them (until it is rotated)."""
    label, recipient = resolve_recipient(repo, to)
    rel = find_key_file(repo, key, file)
    outside = recipient not in rule_readers(repo, rel)
    if outside and not outside_rule:
        raise BadInput(
            f"{label} is not among the readers .sops.yaml names for {rel}; grant them access instead, "
            "or pass --outside-rule to hand the value over anyway (recorded in the ledger as exposed to them)"
        )
    age = find_age()  # before decrypting: fail early without holding a value
    require_plugins([(f"sharing {key} with {label}", recipient)])  # age runs age-plugin-NAME for it
    value = repo.sops.extract(rel, key)
    proc = run(age, ("-r", recipient, "-a"), cwd=repo.root, stdin=value, env=child_env(), redact=(value,))
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----"):
        raise ToolFailed(
            f"age could not encrypt to {label} (exit {proc.returncode}): {stderr_summary(proc.stderr)}",
            stderr_summary(proc.stderr),
        )
    if outside:
        mark_exposed(repo.root, rel, [key], reader=label, operator=operator_name(repo.root))
    return SharedSecret(rel, key, label, recipient, proc.stdout, outside)

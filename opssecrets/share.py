"""One secret's current value, encrypted with ``age`` to one recipient, for a one-off hand-over.

The value goes from ``sops decrypt --extract`` (captured) to ``age -r RECIPIENT -a`` on its
stdin; it is never written to a file, put in argv, or shown in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, ToolFailed
from opssecrets.findsecret import find_secret
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


def share_secret(repo: Repo, key: str, to: str, file: str | Path | None = None, *, outside_rule: bool = False) -> SharedSecret:
    """Encrypt the current value of ``key`` (in the file :func:`find_secret` picks, as for
    ``rotate``) to ``to`` with age, ASCII-armored.

    A recipient the file's rule does not include is refused unless ``outside_rule``; then the
    hand-over is recorded in the ledger as an exposure of ``key`` to them (until it is rotated)."""
    from opssecrets.policy import load_policy

    label, recipient = resolve_recipient(repo, to)
    found = find_secret(repo, key, file, load_policy(repo.root).platform.default_file)
    rel, key = found.relpath, found.key
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

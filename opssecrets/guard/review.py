"""Who gained or lost access in ``.sops.yaml`` since a base commit (``check --base REF``).

A pull request that adds a recipient to ``.sops.yaml`` gives someone the next version of
every secret its rules cover, without touching a secret file. Every key type sops reads is
a recipient here (age, pgp, kms, gcp_kms, azure_keyvault, hc_vault, ...), in a rule's own
lists and in its key groups, so a PGP fingerprint or a KMS ARN is reviewed like an age key. CI runs
``opssecrets check --all --base origin/main``: recipients added (keys the base file did not
have) and existing recipients given more rules are findings when the leak policy's
``[review] recipients`` setting is on, so the pull request fails until someone approves it.
Removals are listed as notes (the removed key still opens old copies: rotate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opssecrets import git
from opssecrets.errors import BadInput, OpsError
from opssecrets.guard.findings import Finding
from opssecrets.paths import CONFIG_NAME
from opssecrets.rules import CreationRule
from opssecrets.sopsconfig import SopsConfig, short_name

RULE_ADDED = "recipient-added"
RULE_GRANTED = "recipient-granted"


@dataclass(frozen=True)
class RecipientChange:
    """``kind``: added / removed (the key is new to the file or gone from it), granted /
    revoked (a key the file kept reads more or fewer rules)."""

    kind: str
    key: str
    label: str
    rules: tuple[str, ...] = ()


def _key_id(key_type: str, ident: str) -> str:
    """One key as a string: an age recipient as is, any other type as ``type:identifier``."""
    return ident if key_type == "age" else f"{key_type}:{ident}"


def _ident(key: str) -> str:
    return key if key.startswith("age1") else key.split(":", 1)[1]


def _rule_keys(rule: CreationRule) -> set[str]:
    keys = set(rule.age_recipients)
    keys.update(_key_id(key_type, ident) for group in rule.groups for key_type, ident in group.other)
    return keys


def _label(config: SopsConfig, key: str) -> str:
    ident = _ident(key)
    name = config.name_for_key(ident)
    prefix = "" if key.startswith("age1") else f"{key.split(':', 1)[0]} key "
    shown = ident if len(ident) <= 60 and not key.startswith("age1") else f"{ident[:12]}…"
    return f"{prefix}{short_name(name)} ({shown})" if name is not None else f"{prefix}{shown}"


def _readers(config: SopsConfig) -> dict[str, set[str]]:
    """Rule label -> the keys (of every type) that read it (rules told apart by regex and position)."""
    out: dict[str, set[str]] = {}
    for rule in config.rules:
        label = rule.label
        if label in out:
            label = f"{label} #{rule.index + 1}"
        out[label] = _rule_keys(rule)
    return out


def _all_keys(config: SopsConfig) -> set[str]:
    defined = {r.key for r in config.recipients if r.key.startswith("age1")}
    return defined | {k for rule in config.rules for k in _rule_keys(rule)}


def recipient_changes(before: SopsConfig | None, after: SopsConfig) -> list[RecipientChange]:
    """What changed in who can read what, from ``before`` (None: no file) to ``after``."""
    before_keys = _all_keys(before) if before is not None else set()
    after_keys = _all_keys(after)
    before_rules = _readers(before) if before is not None else {}
    after_rules = _readers(after)
    changes: list[RecipientChange] = []
    for key in sorted(after_keys - before_keys):
        rules = tuple(label for label, keys in after_rules.items() if key in keys)
        changes.append(RecipientChange("added", key, _label(after, key), rules))
    if before is not None:
        for key in sorted(before_keys - after_keys):
            changes.append(RecipientChange("removed", key, _label(before, key)))
    for key in sorted(after_keys & before_keys):
        granted = tuple(label for label, keys in after_rules.items() if key in keys and key not in before_rules.get(label, set()))
        revoked = tuple(label for label, keys in before_rules.items() if key in keys and key not in after_rules.get(label, set()))
        if granted:
            changes.append(RecipientChange("granted", key, _label(after, key), granted))
        if revoked:
            assert before is not None
            changes.append(RecipientChange("revoked", key, _label(before, key), revoked))
    return changes


def _line_of(text: str, key: str) -> int | None:
    ident = _ident(key)
    # a key-group mapping (arn=...,role=...) is found by its longest field value
    needle = max((part.split("=", 1)[-1] for part in ident.split(",")), key=len) if "=" in ident else ident
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def check_ref(root: Path, ref: str) -> None:
    """BadInput unless ``ref`` names a commit here."""
    if not ref or ref.startswith("-"):
        raise BadInput(f"--base {ref!r}: give a commit, branch or tag (e.g. origin/main)")
    if not git.is_commit(root, ref):
        raise BadInput(f"--base {ref}: no such commit in {root}; fetch it first (git fetch origin) or check the name")


def read_base(root: Path, ref: str) -> bytes | None:
    """``.sops.yaml`` as committed at ``ref`` (None: the file did not exist there)."""
    check_ref(root, ref)
    return git.show_file(root, ref, CONFIG_NAME)


def review_recipients(root: Path, ref: str, current: bytes | None, needs_review: bool) -> tuple[list[Finding], list[str]]:
    """Findings (access gained, when ``needs_review``) and notes (everything else) since ``ref``."""
    base = read_base(root, ref)
    notes: list[str] = []
    try:
        before = SopsConfig(base.decode("utf-8"), f"{CONFIG_NAME} at {ref}") if base is not None else None
    except (OpsError, UnicodeDecodeError):
        return [], [f"{CONFIG_NAME} at {ref} does not parse; recipients were not compared with it"]
    if current is None:
        if before is not None and before.recipients:
            notes.append(f"{CONFIG_NAME} was deleted since {ref}; every recipient it listed is gone from it")
        return [], notes
    try:
        after = SopsConfig(current.decode("utf-8"), CONFIG_NAME)
    except (OpsError, UnicodeDecodeError):
        return [], [f"{CONFIG_NAME} does not parse (see its finding); recipients were not compared with {ref}"]
    findings: list[Finding] = []
    for change in recipient_changes(before, after):
        where = ", ".join(change.rules)
        if change.kind == "added":
            text = f"{change.label} is a new recipient since {ref}" + (f"; reads {where}" if where else "")
            rule = RULE_ADDED
        elif change.kind == "granted":
            text = f"{change.label} reads more since {ref}: {where}"
            rule = RULE_GRANTED
        elif change.kind == "removed":
            notes.append(f"recipient removed since {ref}: {change.label}; rotate what it could read (see docs/runbooks)")
            continue
        else:
            notes.append(f"{change.label} no longer reads {where} since {ref}")
            continue
        if needs_review:
            findings.append(Finding(CONFIG_NAME, _line_of(after.text, change.key), rule, f"{text}: have this access change reviewed"))
        else:
            notes.append(text)
    return findings, notes

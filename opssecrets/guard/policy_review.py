"""What a branch changes in the repository's own policy files since a base commit (``check --base REF``).

The repository's ``policies/*.toml`` decide what the guard finds (allowlists, rules, the
recipient review) and where values and enrolment requests go (``[platform] homeserver``,
``forgejo_url``). A branch that edits them could switch off its own review, so with
``--base`` the guard runs with the policy committed at REF and every change to a policy
file is a finding (``policy-changed``) that says what it loosens. Comment and whitespace
edits change nothing and are not findings.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opssecrets import git
from opssecrets.guard.findings import Finding

RULE_POLICY_CHANGED = "policy-changed"
POLICY_DIR = "policies"
SYMLINK_MODE = "120000"
_MISSING = object()


@dataclass(frozen=True)
class _PolicyFile:
    data: bytes | None
    symlink: bool = False


def _from_git(root: Path, ref: str | None) -> dict[str, _PolicyFile]:
    """The policy files at ``ref`` (None: in the index), never following a symlink."""
    entries = {path: entry for path, entry in git.files_at(root, ref, POLICY_DIR).items() if path.endswith(".toml")}
    blobs = git.read_blobs(root, [sha for mode, sha in entries.values() if mode != SYMLINK_MODE])
    return {
        path: _PolicyFile(None, True) if mode == SYMLINK_MODE else _PolicyFile(blobs.get(sha))
        for path, (mode, sha) in entries.items()
    }


def _from_worktree(root: Path) -> dict[str, _PolicyFile]:
    folder = root / POLICY_DIR
    if folder.is_symlink():
        return {POLICY_DIR: _PolicyFile(None, True)}
    if not folder.is_dir():
        return {}
    out: dict[str, _PolicyFile] = {}
    for entry in os.scandir(folder):
        if not entry.name.endswith(".toml"):
            continue
        rel = f"{POLICY_DIR}/{entry.name}"
        if entry.is_symlink():
            out[rel] = _PolicyFile(None, True)
        elif entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb") as handle:
                out[rel] = _PolicyFile(handle.read())
    return out


def _parse(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return {}
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> values; leak rules (``[[rules]]``) keyed by their id."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted == "rules" and isinstance(value, list):
            for index, rule in enumerate(value):
                rule_id = rule.get("id") if isinstance(rule, dict) else None
                out[f"rules.{rule_id if isinstance(rule_id, str) else '#' + str(index + 1)}"] = rule
        elif isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _show(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _items(values: list[Any]) -> str:
    shown = ", ".join(_show(v) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _shipped_rule_ids() -> frozenset[str]:
    from opssecrets.policy_leaks import load_leak_policy

    return frozenset(rule.id for rule in load_leak_policy().rules)


_ADDED_WORDING = {
    "allowlist.paths": "allowlists the paths {items}: no finding of any rule there",
    "allowlist.fingerprints": "allowlists {count} value(s) by fingerprint: never findings",
    "allowlist.placeholders": "makes every value containing {items} a placeholder: never a finding",
    "coverage.skip_suffixes": "stops checking that files ending in {items} are encrypted",
    "coverage.skip_paths": "stops checking that {items} are encrypted",
    "generic.ignore_name_suffixes": "ignores secret-sounding names ending in {items}",
}


def _describe(key: str, old: Any, new: Any) -> str:
    """What one changed setting does, worded for a reviewer: what it loosens first."""
    table, _, last = key.rpartition(".")
    kind = table.removeprefix("kinds.") if table.startswith("kinds.") else None
    if key == "review.recipients" and (new is False or new is _MISSING):
        return "turns off the recipient review ([review] recipients): new recipients would pass unreviewed"
    if key in _ADDED_WORDING:
        added = [item for item in _as_list(new) if item not in _as_list(old)]
        if added:
            return _ADDED_WORDING[key].format(items=_items(added), count=len(added))
    if key.startswith("rules."):
        rule_id = key.removeprefix("rules.")
        if old is _MISSING:
            if rule_id in _shipped_rule_ids():
                return f"replaces the shipped leak rule {rule_id}: it may find less"
            return f"adds the leak rule {rule_id}"
        if new is _MISSING:
            return f"removes the leak rule {rule_id}"
        return f"changes the leak rule {rule_id}: it may find less"
    if key in ("generic.min_length", "generic.min_entropy"):
        return f"changes {key} ({_show(old)} -> {_show(new)}): a higher value makes fewer values findings"
    if last == "homeserver":
        return f"sends Matrix registration tokens to {_show(new)} (was {_show(old)})"
    if key == "platform.forgejo_url":
        return f"takes new engineers' SSH keys from {_show(new)} (was {_show(old)})"
    if kind is not None and last == "verify":
        return f"changes how {kind} values are verified ({_show(old)} -> {_show(new)})"
    if kind is not None and last in ("key_pattern", "value_pattern", "fallback"):
        return f"changes which secrets count as {kind} ({last}: {_show(old)} -> {_show(new)})"
    if kind is not None and last == "max_age_days":
        return f"changes how long {kind} values may go unrotated ({_show(old)} -> {_show(new)} days)"
    if kind is not None and last == "expected_team":
        return f"changes the Slack team {kind} tokens must belong to ({_show(old)} -> {_show(new)})"
    return f"changes {key} ({_show(old)} -> {_show(new)})"


def _line_of(text: str, key: str) -> int | None:
    """The line that sets ``key``: searched from its ``[table]`` header when it has one."""
    if key.startswith("rules."):
        pattern = re.compile(rf"^\s*id\s*=\s*[\"']{re.escape(key.removeprefix('rules.'))}[\"']", re.MULTILINE)
        start = 0
    else:
        table, _, last = key.rpartition(".")
        header = re.search(rf"^\s*\[\s*{re.escape(table)}\s*\]", text, re.MULTILINE) if table else None
        start = header.end() if header is not None else 0
        pattern = re.compile(rf"^\s*[\"']?{re.escape(last)}[\"']?\s*=", re.MULTILINE)
    match = pattern.search(text, start)
    return None if match is None else text.count("\n", 0, match.start()) + 1


def _file_findings(path: str, ref: str, before: _PolicyFile | None, after: _PolicyFile | None) -> list[Finding]:
    review = "have this policy change reviewed"
    if after is None:
        return [Finding(path, None, RULE_POLICY_CHANGED, f"removed since {ref}: what it set no longer applies; {review}")]
    if after.symlink:
        return [
            Finding(
                path,
                None,
                RULE_POLICY_CHANGED,
                "is a symlink: opssecrets would read the file it points to, which nobody reviews as policy; "
                "commit the file itself",
            )
        ]
    old = _parse(before.data if before is not None and not before.symlink else None)
    new = _parse(after.data)
    if new is None:
        return [Finding(path, None, RULE_POLICY_CHANGED, f"changed since {ref} and is not valid TOML; {review}")]
    old_flat = _flatten(old) if old is not None else {}
    new_flat = _flatten(new)
    text = (after.data or b"").decode("utf-8", "replace")
    findings = []
    for key in sorted(set(old_flat) | set(new_flat)):
        was, now = old_flat.get(key, _MISSING), new_flat.get(key, _MISSING)
        if was == now:
            continue
        what = _describe(key, was, now)
        findings.append(Finding(path, _line_of(text, key), RULE_POLICY_CHANGED, f"{what}; changed since {ref}: {review}"))
    return findings


def review_policies(root: Path, ref: str, *, staged: bool) -> list[Finding]:
    """A ``policy-changed`` finding for each setting of ``policies/*.toml`` that differs from ``ref``."""
    before = _from_git(root, ref)
    after = _from_git(root, None) if staged else _from_worktree(root)
    findings: list[Finding] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        findings.extend(_file_findings(path, ref, old, new))
    return findings

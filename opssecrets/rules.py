"""Creation rules as sops reads them, and sops' rule matching.

This module is the read-only model, built from plain parsed data (PyYAML's C loader is
enough and fast, so the guard can use it without ruamel.yaml). Editing lives in
``sopsconfig``, which builds the same model from its own parse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from opssecrets.errors import BadInput

# Every key type sops reads from a rule or a key group (``hckms`` and ``plugins`` in sops'
# newer releases): a key of any of them reads the files, so the recipient review sees all.
KEY_TYPES = ("age", "pgp", "kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri", "hc_vault", "hckms", "plugins")
MAX_MERGED_GROUPS = 1_000


@dataclass(frozen=True)
class KeyGroup:
    """One group of master keys: ``age`` recipients plus any other key types, as strings."""

    age: tuple[str, ...] = ()
    other: tuple[tuple[str, str], ...] = ()  # (key type, identifier)

    @property
    def is_empty(self) -> bool:
        return not self.age and not self.other


@dataclass(frozen=True)
class CreationRule:
    index: int
    path_regex: str | None
    groups: tuple[KeyGroup, ...]
    shamir_threshold: int | None = None
    uses_key_groups: bool = False
    encryption_policy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def age_recipients(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for group in self.groups:
            for key in group.age:
                seen.setdefault(key, None)
        return tuple(seen)

    @property
    def has_recipients(self) -> bool:
        return any(not group.is_empty for group in self.groups)

    @property
    def only_age(self) -> bool:
        return self.has_recipients and all(not group.other for group in self.groups)

    def compiled(self) -> re.Pattern[str] | None:
        if self.path_regex is None:
            return None
        return _compile(self.path_regex)

    def matches(self, relpath: str) -> bool:
        pattern = self.compiled()
        return pattern is None or pattern.search(relpath) is not None

    @property
    def label(self) -> str:
        return f"rule {self.index + 1}" + (f" ({self.path_regex})" if self.path_regex is not None else " (matches every path)")


_compiled: dict[str, re.Pattern[str]] = {}


def _compile(regex: str) -> re.Pattern[str]:
    pattern = _compiled.get(regex)
    if pattern is None:
        pattern = re.compile(regex)
        _compiled[regex] = pattern
    return pattern


MAX_KEYS = 10_000  # per key list; more is an alias bomb (lists of aliases of lists), not a team


def split_key_list(value: Any) -> tuple[str, ...]:
    """A key list as sops reads it: a comma-separated string, or (since 3.11) a YAML list.

    Raises BadInput past MAX_KEYS keys: YAML aliases can make a short file expand to
    billions of entries."""
    out: list[str] = []
    _collect_keys(value, out, 0)
    return tuple(out)


def _collect_keys(value: Any, out: list[str], depth: int) -> None:
    if value is None:
        return
    if isinstance(value, str):
        out.extend(part.strip() for part in value.split(",") if part.strip())
    elif isinstance(value, (list, tuple)):
        if depth > 64:
            raise BadInput(".sops.yaml: a key list nests more than 64 levels deep; list the keys flat")
        for item in value:
            _collect_keys(item, out, depth + 1)
            if len(out) > MAX_KEYS:
                raise BadInput(f".sops.yaml: a key list expands to more than {MAX_KEYS} keys (YAML aliases?); list the keys flat")
    else:
        out.append(str(value))


def _group_from(data: Mapping[str, Any], visits: list[int] | None = None, depth: int = 0) -> KeyGroup:
    # visits: groups read so far through merge: (aliases can make a short file name a group
    # billions of times, so the walk is bounded like a key list)
    visits = visits if visits is not None else [0]
    visits[0] += 1
    if visits[0] > MAX_MERGED_GROUPS or depth > 64:
        raise BadInput(f".sops.yaml: key group merges expand to more than {MAX_MERGED_GROUPS} groups (YAML aliases?); list the keys flat")
    age: list[str] = []
    other: list[tuple[str, str]] = []
    for key_type in KEY_TYPES:
        if key_type == "age":
            continue
        raw = data.get(key_type)
        if isinstance(raw, list) and raw and isinstance(raw[0], Mapping):
            # key_groups entries such as kms: [{arn: ...}] or azure_keyvault: [{vaultUrl: ...}]
            for entry in raw:
                if isinstance(entry, Mapping):
                    fields = sorted((str(k), v) for k, v in entry.items())
                    other.append((key_type, ",".join(f"{k}={v}" for k, v in fields)))
                else:  # a plain identifier among the mappings (found by fuzzing)
                    other.extend((key_type, ident) for ident in split_key_list(entry))
        else:
            other.extend((key_type, ident) for ident in split_key_list(raw))
    profile = data.get("aws_profile")
    if profile and any(kind == "kms" for kind, _ in other):
        other.append(("aws_profile", str(profile)))  # the same ARN in another account is another key
    age.extend(split_key_list(data.get("age")))
    merged = data.get("merge")
    if isinstance(merged, list):
        # sops adds a key group's `merge:` groups' keys to the group itself
        for sub in merged:
            if isinstance(sub, Mapping):
                group = _group_from(sub, visits, depth + 1)
                age.extend(group.age)
                other.extend(group.other)
    return KeyGroup(age=tuple(age), other=tuple(other))


POLICY_KEYS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
)


def rule_from_data(index: int, data: Mapping[str, Any]) -> CreationRule:
    regex = data.get("path_regex")
    path_regex = None if regex is None else str(regex)
    key_groups = data.get("key_groups")
    if isinstance(key_groups, list) and key_groups:
        groups = tuple(_group_from(g) if isinstance(g, Mapping) else KeyGroup() for g in key_groups)
        uses_groups = True
    else:
        groups = (_group_from(data),)
        uses_groups = False
    threshold = data.get("shamir_threshold")
    policy = {key: data[key] for key in POLICY_KEYS if key in data}
    return CreationRule(
        index=index,
        path_regex=path_regex,
        groups=groups,
        shamir_threshold=int(threshold) if isinstance(threshold, (int, str)) and str(threshold).isdigit() else None,
        uses_key_groups=uses_groups,
        encryption_policy=policy,
    )


def rules_from_data(data: Any, source: str = ".sops.yaml") -> list[CreationRule]:
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise BadInput(f"{source}: the top level must be a mapping with creation_rules; see .sops.yaml.example")
    raw_rules = data.get("creation_rules") or []
    if not isinstance(raw_rules, list):
        raise BadInput(f"{source}: creation_rules must be a list of rules; see .sops.yaml.example")
    rules: list[CreationRule] = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            raise BadInput(f"{source}: creation rule {index + 1} is not a mapping; each rule is '- path_regex: ...'")
        rules.append(rule_from_data(index, raw))
    return rules


def refuse_symlink(config_path: Path) -> Path:
    """``config_path``, unless it is a symlink: then BadInput (exit 2), before anything reads it.

    sops follows a symlinked ``.sops.yaml``, so a branch that turns it into a link can hand
    the next ``reencrypt`` a file nobody reviewed as the config. opssecrets never follows it."""
    if config_path.is_symlink():
        try:
            target = f" (to {os.readlink(config_path)})"
        except OSError:
            target = ""
        raise BadInput(
            f"{config_path} is a symlink{target}; opssecrets does not follow a symlinked {config_path.name}: "
            "replace the link with the file itself (and review what it says)"
        )
    return config_path


def load_rules_fast(config_path: Path) -> list[CreationRule]:
    """Read the creation rules with PyYAML (C loader when present): fast, read-only."""
    import yaml

    refuse_symlink(config_path)
    from opssecrets.yamllimits import TooDeep, safe_load

    text = config_path.read_text(encoding="utf-8")
    try:
        data = safe_load(text)
    except TooDeep as exc:
        raise BadInput(f"{config_path}: {exc.where}nested too deep to be a .sops.yaml; fix the file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{config_path}:{where} is not valid YAML; fix the syntax") from exc
    return rules_from_data(data, str(config_path))


def relative_to_config(config_dir: Path, path: Path) -> str:
    """The path sops matches rules against: relative to the folder holding ``.sops.yaml``."""
    try:
        rel = path.resolve().relative_to(config_dir.resolve())
    except ValueError:
        return str(PurePosixPath(path))
    return rel.as_posix()


def matching_rule(rules: Sequence[CreationRule], relpath: str) -> CreationRule | None:
    """The rule sops would use for ``relpath``: the first whose regex searches true, in order."""
    for rule in rules:
        try:
            if rule.matches(relpath):
                return rule
        except re.error as exc:
            raise BadInput(f".sops.yaml {rule.label}: path_regex does not compile ({exc}); fix the regex") from exc
    return None

"""``.sops.yaml`` checks: errors a deploy would hit, warnings a team should hear about."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from opssecrets.errors import BadInput
from opssecrets.keys import bech32_decode, is_age_recipient, is_low_order_x25519, plugin_of_recipient
from opssecrets.regex_samples import sample_matches
from opssecrets.rules import KEY_TYPES
from opssecrets.sopsconfig import NAME_PATTERN, SopsConfig


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    where: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "where": self.where, "message": self.message}


def lint_text(text: str, source: str = ".sops.yaml") -> list[Problem]:
    try:
        config = SopsConfig(text, source)
    except BadInput as exc:
        return [Problem("error", source, exc.message)]
    return lint(config)


def lint(config: SopsConfig) -> list[Problem]:
    problems: list[Problem] = []
    problems += _names(config)
    problems += _keys(config)
    problems += _regexes_and_reachability(config)
    problems += _unknown_rule_keys(config)
    problems += _scalars_in_key_groups(config)
    problems += _coverage(config)
    problems += _key_groups(config)
    return problems


RULE_KEYS = frozenset(
    {
        "path_regex", "key_groups", "shamir_threshold", "age", "pgp", "kms", "aws_profile", "gcp_kms",
        "azure_keyvault", "hc_vault_transit_uri", "unencrypted_suffix", "encrypted_suffix", "unencrypted_regex",
        "encrypted_regex", "unencrypted_comment_regex", "encrypted_comment_regex", "mac_only_encrypted",
    }
)  # fmt: skip


def _unknown_rule_keys(config: SopsConfig) -> list[Problem]:
    import difflib

    out: list[Problem] = []
    for rule, node in zip(config.rules, config.rule_nodes, strict=False):
        for key_node, _ in node.pairs if node.kind == "map" else []:
            key = key_node.value
            if key in RULE_KEYS:
                continue
            close = difflib.get_close_matches(key, RULE_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            out.append(Problem("warning", rule.label, f"sops ignores the key {key!r}{hint}"))
    return out


def _names(config: SopsConfig) -> list[Problem]:
    out: list[Problem] = []
    anchors = Counter(node.anchor for node in config.root.walk() if node.anchor is not None)
    for name, count in anchors.items():
        if count > 1:
            out.append(Problem("error", f"&{name}", f"anchor &{name} is defined {count} times; give each recipient one name"))
        if not NAME_PATTERN.fullmatch(name) and not _sops_reads_as_name(name):
            out.append(Problem("error", f"&{name}", f"anchor name {name!r} is not parseable by sops; use letters, digits, '_' and '-'"))
    keys = Counter(r.key for r in config.recipients if r.name is not None)
    for key, count in keys.items():
        if count > 1:
            names = ", ".join(r.name or "?" for r in config.recipients if r.key == key)
            out.append(Problem("error", names, f"one key has {count} names ({names}); keep one"))
    return out


def _sops_reads_as_name(anchor: str) -> bool:
    """Whether sops (go-yaml) reads ``anchor`` as a valid name and a following indicator:
    its scanner ends a name at the first character outside ``[A-Za-z0-9_-]`` and accepts
    ``:`` there, so ruamel's ``&users:`` is sops' ``&users`` then ``:``."""
    name = re.match(r"[A-Za-z0-9_-]*", anchor)
    assert name is not None
    rest = anchor[name.end() :]
    return bool(name.group()) and rest[:1] in (":", "?", ",", "%", "@", "`")


def _scalars_in_key_groups(config: SopsConfig) -> list[Problem]:
    """Inside key_groups sops reads each key type as a list; a scalar there (``age: *x``
    after ``- pgp: [...]``) makes it refuse the whole file."""
    out: list[Problem] = []
    for rule, node in zip(config.rules, config.rule_nodes, strict=False):
        groups = node.get("key_groups") if node.kind == "map" else None
        if groups is None or groups.resolved().kind != "seq":
            continue
        for number, group in enumerate(groups.resolved().items, start=1):
            group = group.resolved()
            for key_node, value in group.pairs if group.kind == "map" else []:
                if key_node.value in KEY_TYPES and value.resolved().kind == "scalar" and value.resolved().value != "":
                    out.append(
                        Problem(
                            "error",
                            rule.label,
                            f"key group {number}: '{key_node.value}' is a single value, but sops needs a list inside "
                            f"key_groups (it refuses the whole file): write '{key_node.value}: [...]'",
                        )
                    )
    return out


def _keys(config: SopsConfig) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    candidates = [r.key for r in config.recipients if r.key.startswith("age1")]
    candidates += [k for rule in config.rules for k in rule.age_recipients]
    for key in candidates:
        if key in seen:
            continue
        seen.add(key)
        decoded = bech32_decode(key)
        if is_age_recipient(key) and decoded is not None:
            if is_low_order_x25519(decoded[1]):
                out.append(
                    Problem("error", config.name_for_key(key) or key[:16] + "...", f"{key[:16]}... is a low-order point, not a public key")
                )
            continue
        if plugin_of_recipient(key) is not None:
            continue  # a plugin recipient (age1yubikey1...): valid, its payload is the plugin's business
        name = config.name_for_key(key)
        out.append(
            Problem("error", name or key[:16] + "...", f"{key[:16]}... is not a valid age recipient (bech32 checksum fails); copy it again")
        )
    return out


def _regexes_and_reachability(config: SopsConfig) -> list[Problem]:
    out: list[Problem] = []
    compiled: list[re.Pattern[str] | None] = []
    for rule in config.rules:
        try:
            compiled.append(rule.compiled())
        except re.error as exc:
            out.append(Problem("error", rule.label, f"path_regex does not compile: {exc}"))
            compiled.append(None)
    for j, rule in enumerate(config.rules):
        pattern = compiled[j]
        if rule.path_regex is not None and pattern is None:
            continue
        samples = sample_matches(rule.path_regex) if rule.path_regex is not None else ["", "a", "secrets/x.yaml"]
        if not samples:
            continue
        for i in range(j):
            earlier = config.rules[i]
            if earlier.path_regex is not None and compiled[i] is None:
                continue  # reported above; it cannot be matched against
            if all(earlier.matches(sample) for sample in samples):
                out.append(
                    Problem(
                        "error",
                        rule.label,
                        f"unreachable: {earlier.label} comes first and matches every path this rule would; reorder them",
                    )
                )
                break
    return out


def _coverage(config: SopsConfig) -> list[Problem]:
    out: list[Problem] = []
    admins = {r.key for r in config.recipients if r.role == "admin"}
    hosts = {r.key for r in config.recipients if r.role == "host"}
    # A config that names no admin (or no host) at all is one finding, not one per rule:
    # an adopted file with its own layout would otherwise start with a wall of warnings.
    if config.rules and not admins:
        out.append(
            Problem(
                "warning",
                "recipients",
                "no recipient is an admin (anchor prefix admin_, or listed under 'admins:'): "
                "mark the people who must always read everything, or coverage cannot be checked",
            )
        )
    if config.rules and not hosts:
        out.append(
            Problem("warning", "recipients", "no recipient is a host (anchor prefix host_, or listed under 'hosts:')")
        )
    for rule in config.rules:
        keys = set(rule.age_recipients)
        if not rule.has_recipients or not keys:
            continue
        if hosts and not keys & hosts:
            out.append(Problem("warning", rule.label, "no host reads this rule: nothing can deploy these secrets"))
        if admins and len(keys & admins) < 2:
            out.append(Problem("warning", rule.label, f"{len(keys & admins)} admin(s) read this rule: one lost key away from losing it"))
    return out


def _key_groups(config: SopsConfig) -> list[Problem]:
    """Several key groups split the data key: without ``shamir_threshold`` sops needs a key
    from every group, which is rarely what the split means (a host in one group cannot
    decrypt: sops-nix#295); a threshold above the number of groups can never be met."""
    out: list[Problem] = []
    for rule in config.rules:
        groups = len(rule.groups) if rule.uses_key_groups else 1
        threshold = rule.shamir_threshold
        if threshold is not None and threshold > groups:
            out.append(
                Problem(
                    "error",
                    rule.label,
                    f"shamir_threshold is {threshold} but the rule has {groups} key group(s): sops cannot encrypt; "
                    f"lower it to at most {groups}",
                )
            )
        elif groups > 1 and threshold is None:
            out.append(
                Problem(
                    "warning",
                    rule.label,
                    f"{groups} key groups and no shamir_threshold: decrypting needs a key from every group, so a "
                    "host listed in one group cannot read these files; set shamir_threshold: 1 if any group should do",
                )
            )
    return out

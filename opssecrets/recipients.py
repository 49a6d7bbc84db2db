"""Who can read what: the recipient edits, as pure functions from config to config.

Each function takes a :class:`SopsConfig` and returns the edited one (or raises BadInput
before anything is written). The commands turn the before/after pair into a
:class:`~opssecrets.transaction.Plan` and apply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opssecrets.errors import BadInput
from opssecrets.rules import CreationRule
from opssecrets.sopsconfig import PROJECT_PREFIX, Recipient, SopsConfig, anchor_for, check_name, project_regex, short_name


@dataclass(frozen=True)
class Edit:
    after: SopsConfig
    removed_keys: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    exposed_to: str | None = None  # who could read what the removed keys protected (for the ledger)


def _ensure_new(config: SopsConfig, name: str, anchor: str, key: str) -> bool:
    """True if ``anchor`` already holds exactly ``key`` (a re-run); raise on any clash."""
    check_name(name)
    for existing in config.candidates(name):
        if existing.name == anchor and existing.key == key:
            return True
        raise BadInput(f"a recipient named {short_name(existing.name or name)!r} already exists ({existing.name}); pick another name")
    for recipient in config.recipients:
        if recipient.key == key:
            owner = recipient.name or "an unnamed entry"
            raise BadInput(f"that key already belongs to {owner} in {config.source}; one key, one recipient")
    return False


def _define(config: SopsConfig, name: str, anchor: str, key: str) -> SopsConfig:
    if _ensure_new(config, name, anchor, key):
        return config
    return config.with_recipient_defined(anchor, key)


def _rules_for_projects(config: SopsConfig, projects: Sequence[str]) -> list[CreationRule]:
    rules = []
    for project in projects:
        rule = config.project_rule(project)
        if rule is None:
            raise BadInput(f"no project {project!r} in {config.source}: create it with 'opssecrets add-project {project}'")
        rules.append(rule)
    return rules


def _join(config: SopsConfig, anchor: str, rules: Sequence[CreationRule], *, every_rule: bool) -> SopsConfig:
    recipient = config.named()[anchor]
    return config.with_key_in_rules([rule.index for rule in rules], recipient, through_shared=every_rule)


def _every_rule(config: SopsConfig) -> list[CreationRule]:
    """The rules an admin or an every-rule host joins: those already read with age keys.

    A rule protected only by KMS, PGP, Vault or Azure keys is left alone: an age key there
    would let someone decrypt without the cloud IAM or the hardware token the rule asks for."""
    return [rule for rule in config.rules if rule.age_recipients]


def _left_alone(config: SopsConfig) -> tuple[str, ...]:
    notes = []
    for rule in config.rules:
        if rule.age_recipients:
            continue
        kinds = sorted({kind for group in rule.groups for kind, _ in group.other})
        why = f"protected by {' and '.join(kinds)} only" if kinds else "no recipients in it (its keys come from elsewhere)"
        notes.append(f"left alone: {rule.label}: {why}")
    return tuple(notes)


def add_engineer(config: SopsConfig, name: str, key: str, *, admin: bool, projects: Sequence[str]) -> Edit:
    anchor = anchor_for(name, "admin" if admin else "engineer")
    rules = _every_rule(config) if admin else _rules_for_projects(config, projects)
    after = _join(_define(config, name, anchor, key), anchor, rules, every_rule=admin)
    notes: tuple[str, ...] = ()
    if not rules:
        notes = (f"{name} reads no rule yet: give access with 'opssecrets grant {name} PROJECT' (or add them with --admin)",)
    if admin:
        notes += _left_alone(config)
    return Edit(after, (), notes)


def add_host(config: SopsConfig, name: str, key: str, *, projects: Sequence[str]) -> Edit:
    anchor = anchor_for(name, "host")
    rules = _rules_for_projects(config, projects) if projects else _every_rule(config)
    notes = () if projects else _left_alone(config)
    return Edit(_join(_define(config, name, anchor, key), anchor, rules, every_rule=not projects), (), notes)


def replace_host_key(config: SopsConfig, name: str, key: str, *, compromised: bool = False) -> Edit:
    """A reinstalled host's new key. Its old key is gone, so nothing is exposed, unless the
    old key may be in other hands (``compromised``)."""
    host = config.find(name)
    if host.role != "host":
        raise BadInput(f"{host.label} is not a host; --replace changes a host's key")
    if host.key == key:
        return Edit(config)
    for recipient in config.recipients:
        if recipient.key == key:
            raise BadInput(f"that key already belongs to {recipient.label}; a host key must be the host's own")
    exposed_to = f"host {short_name(host.label)} (old key)" if compromised else None
    return Edit(config.with_key_replaced(host.key, key), (host.key,), exposed_to=exposed_to)


def remove(config: SopsConfig, name: str, role: str) -> tuple[Edit, Recipient]:
    """Remove a recipient from every rule and from ``keys:``."""
    recipient = config.find(name)
    if role == "host" and recipient.role != "host":
        raise BadInput(f"{recipient.label} is not a host; use 'opssecrets remove-engineer {name}'")
    if role != "host" and recipient.role == "host":
        raise BadInput(f"{recipient.label} is a host; use 'opssecrets remove-host {short_name(recipient.label)}'")
    if recipient.key_type != "age":
        # the re-encryption and data key rotation that make a removal real are built on age
        # recipients; half a removal (the anchor gone, files still wrapped for the key) is worse
        kind = "PGP key" if recipient.key_type == "pgp" else "non-age key"
        raise BadInput(
            f"{recipient.label} is a {kind} ({recipient.key[:16]}...); opssecrets removes age recipients only: "
            "remove it from .sops.yaml by hand, then 'sops updatekeys' and 'sops rotate -i' each file it could read"
        )
    after = config.with_key_removed_from_rules(recipient.key, through_shared=True)
    if recipient.name is not None:
        after = after.without_recipient(recipient.name)
    return Edit(after, (recipient.key,), exposed_to=short_name(recipient.label)), recipient


def add_project(config: SopsConfig, project: str, members: Sequence[str], hosts: Sequence[str]) -> Edit:
    check_name(project, "project name")
    if config.project_rule(project) is not None:
        raise BadInput(f"project {project!r} already has a rule in {config.source}; use 'opssecrets grant' to add members")
    readers: list[Recipient] = list(config.admins())
    host_list = [config.find(h) for h in hosts] if hosts else [r for r in config.recipients if r.role == "host" and r.key_type == "age"]
    for host in host_list:
        if host.role != "host":
            raise BadInput(f"{host.label} is not a host; --host takes a host added with 'opssecrets add-host'")
    readers += host_list
    readers += [config.find(m) for m in members]
    unique: dict[str, Recipient] = {}
    for reader in readers:
        unique.setdefault(reader.key, reader)
    if not unique:
        raise BadInput("a project needs at least one reader: add an admin first ('opssecrets add-engineer NAME --admin')")
    regex = project_regex(project)
    samples = [f"{PROJECT_PREFIX}{project}/secrets.yaml", f"{PROJECT_PREFIX}{project}/a/b.json", f"{PROJECT_PREFIX}{project}/.env"]
    position = next((rule.index for rule in config.rules if any(rule.matches(s) for s in samples)), len(config.rules))
    after = config.with_rule_inserted(position, regex, list(unique.values()), comment=f"project {project}")
    notes: tuple[str, ...] = ()
    if not host_list:
        notes = ("no host reads this project yet: nothing can deploy it until you 'opssecrets add-host NAME --project ...'",)
    return Edit(after, (), notes)


def grant(config: SopsConfig, name: str, project: str) -> Edit:
    recipient = config.find(name)
    if recipient.key_type != "age":
        raise BadInput(f"{recipient.label} is not an age key; opssecrets grants age recipients only: edit the rule by hand")
    (rule,) = _rules_for_projects(config, [project])
    if recipient.key in rule.age_recipients:
        return Edit(config, (), (f"{recipient.label} already reads project {project}",))
    return Edit(config.with_key_in_rule(rule.index, recipient))


def revoke(config: SopsConfig, name: str, project: str) -> Edit:
    recipient = config.find(name)
    (rule,) = _rules_for_projects(config, [project])
    if recipient.key not in rule.age_recipients:
        raise BadInput(f"{recipient.label} does not read project {project}; nothing to revoke")
    after = config.with_key_removed_from_rule(rule.index, recipient.key)
    return Edit(after, (recipient.key,), exposed_to=short_name(recipient.label))

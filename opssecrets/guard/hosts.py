"""Can each NixOS host decrypt the sops files its configuration declares?

A host that activates and cannot decrypt a declared file loses every secret in it, and
nothing says so before the deploy (sops-nix#333). This joins the two halves the guard
already reads: the hosts' ``sops.*`` declarations (:mod:`opssecrets.guard.sopsnix`) and who
reads each file, by its ``.sops.yaml`` rule and by its own metadata.

A host is a folder ``hosts/NAME/`` or ``machines/NAME/`` (anywhere in the tree), or a
``nixosConfigurations.NAME`` in ``flake.nix``. Its configuration is the ``.nix`` files of
its folder (or the paths its flake entry names) and every ``.nix`` file those reach through
path literals (``imports = [ ../../modules/bridge.nix ];``). Its recipient is the
``.sops.yaml`` anchor ``host_NAME``, ``server_NAME``, ``machine_NAME`` or ``NAME``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opssecrets.guard.findings import Finding
from opssecrets.guard.sopsnix import (
    NixSopsDecls,
    mask,
    parse_declarations,
    placeholders,
    resolve_path,
)
from opssecrets.guard.sources import Reader
from opssecrets.rules import CreationRule, matching_rule, rules_from_data
from opssecrets.secretfile import SopsMetadata, metadata_from, parse_tree
from opssecrets.sopsconfig import PROJECT_PREFIX

RULE_HOST_CANNOT_DECRYPT = "sops-nix-host-cannot-decrypt"
HOST_FOLDERS = ("hosts", "machines")
HOST_ANCHOR_PREFIXES = ("host_", "server_", "machine_", "")
SSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
MAX_NIX_BYTES = 4 << 20  # a module larger than this is generated data, not configuration

_PATH_LITERAL = re.compile(r"(?<![A-Za-z0-9_/.-])(\.{1,2}/[A-Za-z0-9._/+-]*)")
_FLAKE_HOSTS = re.compile(r"nixosConfigurations\s*(?:\.\s*(\"[^\"\n]*\"|[A-Za-z_][A-Za-z0-9_'-]*)\s*)?=(?!=)\s*")


@dataclass
class Host:
    name: str
    entries: set[str] = field(default_factory=set)  # the .nix files its configuration starts from
    files: set[str] = field(default_factory=set)  # every .nix file it reaches


@dataclass(frozen=True)
class Use:
    """One place a host's configuration uses a sops file: a declaration or a template placeholder."""

    nix_file: str
    line: int
    what: str  # 'sops.secrets."x"' or 'sops.placeholder."x"'
    sops_file: str


@dataclass(frozen=True)
class HostFinding:
    finding: Finding
    host: Host
    sops_file: str


# -- which hosts, and which .nix files are theirs -----------------------------------------------


def discover_hosts(nix_files: Iterable[str], read: Reader) -> dict[str, Host]:
    listed = set(nix_files)
    hosts: dict[str, Host] = {}
    for rel in sorted(listed):
        parts = rel.split("/")
        for i, part in enumerate(parts[:-2]):
            if part in HOST_FOLDERS:
                hosts.setdefault(parts[i + 1], Host(parts[i + 1])).entries.add(rel)
                break
    if "flake.nix" in listed:
        data = read("flake.nix")
        if data is not None:
            for name, paths in flake_hosts(data.decode("utf-8", "replace"), listed):
                hosts.setdefault(name, Host(name)).entries.update(paths)
    for host in hosts.values():
        host.files = _reachable(host.entries, listed, read)
    return hosts


def flake_hosts(text: str, listed: set[str]) -> list[tuple[str, set[str]]]:
    """``nixosConfigurations.NAME = ...`` (or ``nixosConfigurations = { NAME = ...; }``) with the
    .nix files each entry names by path."""
    from opssecrets.guard.sopsnix import _bindings, _matching_brace, _statement_end

    masked = mask(text)
    found: list[tuple[str, set[str]]] = []
    for match in _FLAKE_HOSTS.finditer(masked):
        start = match.end()
        if match.group(1) is not None:
            name = text[match.start(1) : match.end(1)].strip('"')
            end = _statement_end(masked, start, len(masked))
            found.append((name, _nix_paths(masked[start:end], "flake.nix", listed)))
        elif masked.startswith("{", start):
            close = _matching_brace(masked, start)
            for path, _, vstart, vend in _bindings(text, masked, start + 1, close):
                found.append((path[0], _nix_paths(masked[vstart:vend], "flake.nix", listed)))
    return found


def _nix_paths(masked_value: str, rel: str, listed: set[str]) -> set[str]:
    """The listed .nix files that path literals in a (masked) Nix expression point at."""
    out: set[str] = set()
    for match in _PATH_LITERAL.finditer(masked_value):
        target = resolve_path(match.group(1).rstrip("/"), rel)
        if target is None:
            continue
        if target in listed and target.endswith(".nix"):
            out.add(target)
        elif f"{target}/default.nix" in listed:
            out.add(f"{target}/default.nix")
    return out


def _reachable(entries: set[str], listed: set[str], read: Reader) -> set[str]:
    seen: set[str] = set()
    todo = sorted(entries)
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        data = read(rel)
        if data is None or len(data) > MAX_NIX_BYTES:
            continue
        todo.extend(_nix_paths(mask(data.decode("utf-8", "replace")), rel, listed) - seen)
    return seen


# -- what each host's configuration uses ---------------------------------------------------------


def host_uses(host: Host, read: Reader) -> list[Use]:
    parsed: dict[str, tuple[str, NixSopsDecls]] = {}
    for rel in sorted(host.files):
        data = read(rel)
        if data is None or b"sops" not in data or len(data) > MAX_NIX_BYTES:
            continue
        text = data.decode("utf-8", "replace")
        parsed[rel] = (text, parse_declarations(text))
    defaults = {
        resolve_path(decls.default_file[0], rel) for rel, (_, decls) in parsed.items() if decls.default_file is not None
    }
    # sops.defaultSopsFile is one option per NixOS system: set in one module, used by all
    host_default = defaults.pop() if len(defaults) == 1 else None
    uses: list[Use] = []
    declared: set[str] = set()
    for rel, (text, decls) in parsed.items():
        for secret in decls.secrets:
            declared.add(secret.name)
            own = secret.options.get("sopsFile")
            sops_file = resolve_path(own[0], rel) if own is not None else host_default
            if sops_file is not None:
                uses.append(Use(rel, _line(text, secret.offset), f'sops.secrets."{secret.name}"', sops_file))
    for rel, (text, _) in parsed.items():
        for name, offset in placeholders(text):
            # a placeholder of a secret declared elsewhere in this host is covered by that declaration
            if name not in declared and host_default is not None:
                uses.append(Use(rel, _line(text, offset), f'sops.placeholder."{name}"', host_default))
    return uses


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# -- the host's recipient, and who can read a file ------------------------------------------------


def anchored_keys(config_text: str) -> dict[str, tuple[str, int]]:
    """Every anchored scalar of ``.sops.yaml``: anchor -> (key text, line)."""
    import yaml

    from opssecrets.yamllimits import TooDeep, events

    out: dict[str, tuple[str, int]] = {}
    try:
        for event in events(config_text):
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                line = event.start_mark.line + 1 if event.start_mark is not None else 0
                out.setdefault(event.anchor, (event.value.strip(), line))
    except (yaml.YAMLError, TooDeep):
        return {}  # the config check reports an unparseable .sops.yaml
    return out


def host_recipient(name: str, anchors: dict[str, tuple[str, int]]) -> tuple[str, str] | None:
    """(anchor, key) of the host, by the first of host_NAME, server_NAME, machine_NAME, NAME."""
    for prefix in HOST_ANCHOR_PREFIXES:
        if prefix + name in anchors:
            return prefix + name, anchors[prefix + name][0]
    return None


def can_decrypt(key: str, groups: Sequence[Iterable[str]], threshold: int | None) -> bool:
    """Whether one key opens a data key split over ``groups``: sops needs a key from
    ``threshold`` groups (every group when no threshold is set)."""
    holding = sum(1 for group in groups if key in set(group))
    need = threshold if threshold else len(groups)
    return holding > 0 and holding >= need


def rule_lets(key: str, rule: CreationRule) -> bool:
    return can_decrypt(key, [group.age for group in rule.groups], rule.shamir_threshold)


def metadata_lets(key: str, metadata: SopsMetadata) -> bool:
    return can_decrypt(key, [group.age for group in metadata.groups], metadata.shamir_threshold)


def _metadata(sops_file: str, read: Reader) -> SopsMetadata | None:
    data = read(sops_file)
    if data is None:
        return None  # sops-nix-missing-file says so
    try:
        _, meta = parse_tree(Path(sops_file), data.decode("utf-8"))
        return metadata_from(meta)
    except Exception:  # not a sops file: the coverage check reports it
        return None


def _project_of(sops_file: str) -> str | None:
    if not sops_file.startswith(PROJECT_PREFIX):
        return None
    rest = sops_file[len(PROJECT_PREFIX) :]
    return rest.split("/", 1)[0] if "/" in rest else None


def _fix(name: str, anchor: str | None, sops_file: str, rule: CreationRule | None, rule_ok: bool) -> str:
    project = _project_of(sops_file)
    if anchor is None:
        with_project = f" --project {project}" if project else ""
        return f"add it: 'opssecrets add-host {name} --ssh-host-key {SSH_HOST_KEY}{with_project}'"
    if not rule_ok and rule is not None:
        if project is not None and rule.path_regex is not None and project in rule.path_regex:
            return f"'opssecrets grant {name} {project}'"
        return f"add *{anchor} to {rule.label} in .sops.yaml, then 'opssecrets reencrypt {sops_file}'"
    return f"'opssecrets reencrypt {sops_file}'"


def _why(anchor: str | None, rule: CreationRule | None, rule_ok: bool, meta_ok: bool) -> str:
    if anchor is None:
        return "it has no recipient in .sops.yaml (looked for host_, server_, machine_ or the plain name)"
    missing = []
    if not rule_ok and rule is not None:
        missing.append(f"{rule.label} of .sops.yaml")
    if not meta_ok:
        missing.append("the file's own sops metadata")
    return f"{anchor} is not a recipient by {' nor by '.join(missing)}"


def check_hosts(config_text: str, nix_files: Iterable[str], read: Reader) -> list[HostFinding]:
    """Every (host, declaring line) whose host cannot decrypt the sops file it declares."""
    from opssecrets.yamllimits import safe_load

    try:
        rules = rules_from_data(safe_load(config_text))
    except Exception:  # an unparseable .sops.yaml is the config check's finding
        return []
    anchors = anchored_keys(config_text)
    out: list[HostFinding] = []
    metadata: dict[str, SopsMetadata | None] = {}
    for host in discover_hosts(nix_files, read).values():
        recipient = host_recipient(host.name, anchors)
        anchor, key = recipient if recipient is not None else (None, "")
        reported: set[tuple[str, str]] = set()  # (nix file, sops file): one finding each
        for use in host_uses(host, read):
            if (use.nix_file, use.sops_file) in reported:
                continue
            if use.sops_file not in metadata:
                metadata[use.sops_file] = _metadata(use.sops_file, read)
            meta = metadata[use.sops_file]
            if meta is None:
                continue
            where = f"{use.what}: host {host.name} cannot decrypt {use.sops_file}"
            if key.startswith("ssh-"):
                message = (
                    f"{where}: {anchor} is a native ssh-ed25519 recipient, and sops-nix decrypts with the host key's "
                    f"age conversion (sops-nix#955); remove that key from .sops.yaml, 'opssecrets add-host {host.name} "
                    f"--ssh-host-key {SSH_HOST_KEY}' (it stores the age1 conversion), then 'opssecrets reencrypt'"
                )
            else:
                rule = matching_rule(rules, use.sops_file) if rules else None
                rule_ok = anchor is not None and (rule is None or not rule.has_recipients or rule_lets(key, rule))
                meta_ok = anchor is not None and metadata_lets(key, meta)
                if rule_ok and meta_ok:
                    continue
                why = _why(anchor, rule, rule_ok, meta_ok)
                fix = _fix(host.name, anchor, use.sops_file, rule, rule_ok)
                message = f"{where}: {why}; the deploy would lose its secrets: {fix}"
            reported.add((use.nix_file, use.sops_file))
            out.append(HostFinding(Finding(use.nix_file, use.line, RULE_HOST_CANNOT_DECRYPT, message), host, use.sops_file))
    return out


def host_findings(root: Path, read: Reader, config_data: bytes | None, checked: Sequence[str], mode: str) -> list[Finding]:
    """The host check for one guard run: findings that concern what is being checked.

    Everything with ``--all``; otherwise a finding stays when the run checks ``.sops.yaml``,
    the sops file, or any ``.nix`` file of that host's configuration."""
    if config_data is None:
        return []
    wanted = set(checked)
    everything = mode == "all" or ".sops.yaml" in wanted
    if not everything and not any(rel.endswith(".nix") for rel in wanted) and not _any_covered(config_data, wanted):
        return []  # a commit of other files changes no host's access: skip the work
    from opssecrets import git

    listed = git.tracked_files(root) if mode == "staged" else (git.listed_files(root) or [])
    nix_files = [rel for rel in listed if rel.endswith(".nix")]
    if not nix_files:
        return []
    try:
        config_text = config_data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [
        item.finding
        for item in check_hosts(config_text, nix_files, read)
        if everything or item.sops_file in wanted or item.host.files & wanted
    ]



def _any_covered(config_data: bytes, rels: set[str]) -> bool:
    """Whether a creation rule covers any of ``rels`` (so it may be a sops file a host uses)."""
    from opssecrets.yamllimits import safe_load

    try:
        rules = rules_from_data(safe_load(config_data.decode("utf-8")))
        return any(matching_rule(rules, rel) is not None for rel in rels)
    except Exception:  # an unparseable .sops.yaml is the config check's finding
        return False

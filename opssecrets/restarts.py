"""What a deploy restarts when a secret changes: sops-nix's ``restartUnits``/``reloadUnits``.

sops-nix restarts (or reloads) the units a secret names when its value changes on
activation; a secret that names none is swapped on disk while the service keeps the old
value in memory until someone restarts it (sops-nix#220). ``rotate`` prints what will
restart, or warns that nothing will; ``check`` notes token secrets declared without units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opssecrets.guard.sopsnix import default_from_files, parse_declarations, resolve_path
from opssecrets.policy import Policy

_STRING = re.compile(r'"([^"\\$]+)"')


@dataclass(frozen=True)
class SecretDeclaration:
    """One ``sops.secrets."NAME"`` in a .nix file, with what sops-nix restarts for it."""

    nix_file: str
    line: int
    name: str
    key: str  # the key in the sops file: its ``key = "..."``, else its name
    sops_file: str | None  # None when it cannot be resolved without evaluating Nix
    restart_units: tuple[str, ...]
    reload_units: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.nix_file}:{self.line}"


def _units(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    literal = tuple(_STRING.findall(raw))
    if literal:
        return literal
    inner = raw.strip().removeprefix("[").removesuffix("]").strip()
    return (inner,) if inner else ()


def declarations_in(rel: str, text: str, repo_default: str | None = None) -> list[SecretDeclaration]:
    decls = parse_declarations(text)
    default = repo_default
    if decls.default_file is not None:
        default = resolve_path(decls.default_file[0], rel)
    out: list[SecretDeclaration] = []
    for secret in decls.secrets:
        own = secret.options.get("sopsFile")
        sops_file = resolve_path(own[0], rel) if own is not None else default
        key_expr = secret.options.get("key")
        key_match = re.fullmatch(r'"([^"\\$]*)"', key_expr[0].strip()) if key_expr is not None else None
        key = key_match.group(1) if key_match else secret.name
        restart = secret.options.get("restartUnits")
        reload = secret.options.get("reloadUnits")
        out.append(
            SecretDeclaration(
                nix_file=rel,
                line=text.count("\n", 0, secret.offset) + 1,
                name=secret.name,
                key=key,
                sops_file=sops_file,
                restart_units=_units(restart[0] if restart else None),
                reload_units=_units(reload[0] if reload else None),
            )
        )
    return out


def repository_declarations(root: Path) -> list[SecretDeclaration]:
    """Every sops-nix secret declared in the repository's .nix files (working tree)."""
    from opssecrets import git

    texts: dict[str, bytes] = {}
    for rel in git.listed_files(root) or []:
        if not rel.endswith(".nix"):
            continue
        try:
            data = (root / rel).read_bytes()
        except OSError:
            continue
        if b"sops" in data:
            texts[rel] = data
    default = default_from_files(texts)
    out: list[SecretDeclaration] = []
    for rel, data in sorted(texts.items()):
        out.extend(declarations_in(rel, data.decode("utf-8", "replace"), default))
    return out


def declarations_of(declared: Iterable[SecretDeclaration], key: str, sops_file: str) -> list[SecretDeclaration]:
    """The declarations that deploy ``key`` of ``sops_file`` (an unresolvable file counts)."""
    return [d for d in declared if d.key == key and d.sops_file in (None, sops_file)]


def restart_steps(found: list[SecretDeclaration], services: tuple[str, ...]) -> tuple[list[str], str | None]:
    """(next steps naming what restarts on deploy, a warning when nothing does)."""
    steps: list[str] = []
    for decl in found:
        if decl.restart_units:
            steps.append(f"On deploy sops-nix restarts {', '.join(decl.restart_units)} (sops.secrets.\"{decl.name}\", {decl.where})")
        if decl.reload_units:
            steps.append(f"On deploy sops-nix reloads {', '.join(decl.reload_units)} (sops.secrets.\"{decl.name}\", {decl.where})")
    if steps:
        return steps, None
    reader = ", ".join(services) if services else "the service that reads it"
    if found:
        where = ", ".join(decl.where for decl in found)
        why = f"sops.secrets.\"{found[0].name}\" ({where}) has no restartUnits or reloadUnits"
    else:
        why = "no .nix file declares it with restartUnits or reloadUnits"
    return [], (
        f"nothing restarts on deploy: {why}, so {reader} keeps the old value until restarted; "
        f"restart it by hand, or add restartUnits = [ \"{services[0] if services else 'UNIT'}.service\" ]"
    )


_POLICIES: dict[tuple[Path, tuple[tuple[str, int], ...]], Policy | None] = {}


def _policy(root: Path) -> Policy | None:
    """The repository's policy, loaded once per run of ``check`` (keyed by its files' mtimes)."""
    from opssecrets.errors import OpsError
    from opssecrets.policy import load_policy, repo_policy_files

    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in repo_policy_files(root))
    if (root, stamp) not in _POLICIES:
        try:
            _POLICIES[(root, stamp)] = load_policy(root)
        except OpsError:
            _POLICIES[(root, stamp)] = None  # a broken policy is reported by the commands that need it
    return _POLICIES[(root, stamp)]


def missing_restart_notes(root: Path, rel: str, text: str) -> list[str]:
    """Notes for ``check``: token secrets declared without restartUnits/reloadUnits (sops-nix#220)."""
    policy = _policy(root)
    if policy is None:
        return []
    notes: list[str] = []
    for decl in declarations_in(rel, text):
        if decl.restart_units or decl.reload_units:
            continue
        kind = policy.kind_for_key(decl.key)
        if kind.fallback:
            continue
        unit = f"{kind.services[0]}.service" if kind.services else "UNIT.service"
        notes.append(
            f"{decl.where}: sops.secrets.\"{decl.name}\" (kind {kind.name}) has no restartUnits: after a rotation "
            f"the service keeps the old token until restarted (sops-nix#220); add restartUnits = [ \"{unit}\" ]"
        )
    return notes

"""``doctor``: is this machine ready to work on the ops repository's secrets?

Each check is data (name, ok, what was found, the fix); the command renders them. A check
marked ``needed`` that fails makes the exit code non-zero; the keyring is informational
(no keyring is a normal case when another identity source works).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from opssecrets.errors import OpsError
from opssecrets.identity import (
    SOURCE_ENV,
    SSH_KEY_VAR,
    USER_IDENTITY_VARS,
    ResolvedIdentity,
    keyring_identity,
    keyring_info,
    resolve_identity,
    sops_default_key_file,
)
from opssecrets.keys import plugin_of_recipient
from opssecrets.plugins import PROGRAM_PREFIX, plugins_on_path
from opssecrets.repo import Repo, RepoContext
from opssecrets.rules import CreationRule, load_rules_fast, matching_rule, relative_to_config
from opssecrets.sops import AGE_FLOOR, SOPS_FLOOR, Binary, Sops, find_age, find_sops


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""
    needed: bool = True


@dataclass(frozen=True)
class FileAccess:
    """Whether the resolved identity can read one secret file, and why not."""

    file: str
    in_rule: bool | None  # None: the identity's recipient is not known (SOPS_AGE_KEY_CMD, plugin)
    wrapped: bool | None
    decrypts: bool
    status: str
    fix: str = ""

    @property
    def problem(self) -> bool:
        return bool(self.fix)


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    files: list[FileAccess] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok or not c.needed for c in self.checks) and not any(f.problem for f in self.files)

    def problems(self) -> list[tuple[str, str]]:
        out = [(f"{c.name}: {c.found}", c.fix) for c in self.checks if not c.ok and c.needed]
        out += [(f"{f.file}: {f.status}", f.fix) for f in self.files if f.problem]
        return out


def _floor(floor: tuple[int, int, int]) -> str:
    return ".".join(map(str, floor))


def _binary_check(name: str, floor: tuple[int, int, int]) -> tuple[Check, Binary | None]:
    try:
        binary = find_sops() if name == "sops" else find_age()
    except OpsError as exc:
        return Check(name, False, "not usable", exc.message), None
    return Check(name, True, f"{binary.path} {binary.version_text} (need >= {_floor(floor)})"), binary


def _config_checks(repo: Repo | None, locate_error: str) -> tuple[list[Check], list[CreationRule]]:
    """``.sops.yaml`` found and lint-clean (errors are problems; warnings are notes)."""
    if repo is None:
        return [Check(".sops.yaml", False, "no ops repository here", locate_error)], []
    if not repo.config_path.is_file():
        return [Check(".sops.yaml", False, f"not found in {repo.root}", "run 'opssecrets init' there, or pass --repo DIR")], []
    from opssecrets.lint import lint_text

    try:
        text = repo.config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        found = f"{repo.config_path} cannot be read ({exc.__class__.__name__})"
        return [Check(".sops.yaml", False, found, "fix its permissions")], []
    problems = lint_text(text, repo.config_path.name)
    errors = [p for p in problems if p.level == "error"]
    warnings = [p for p in problems if p.level != "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        found = f"{repo.config_path}: {first.where}: {first.message}{more}"
        return [Check(".sops.yaml", False, found, "run 'opssecrets lint' and fix what it reports")], []
    try:
        rules = load_rules_fast(repo.config_path)
    except OpsError as exc:
        return [Check(".sops.yaml", False, exc.message, "run 'opssecrets lint' and fix what it reports")], []
    checks = [Check(".sops.yaml", True, f"{repo.config_path}, {len(rules)} creation rule(s), lint clean")]
    for warning in warnings:
        checks.append(Check("lint", False, f"{warning.where}: {warning.message}", "see 'opssecrets lint'", needed=False))
    return checks, rules


def _identity_check(resolved: ResolvedIdentity | OpsError) -> Check:
    if isinstance(resolved, OpsError):  # an SSH key that cannot be opened (passphrase missing or wrong)
        return Check("identity", False, resolved.message, "fix that and run 'opssecrets doctor' again")
    if not resolved.found:
        return Check(
            "identity",
            False,
            f"none: no {'/'.join(USER_IDENTITY_VARS[:2])} set, none in the OS keyring, no {sops_default_key_file()}",
            "run 'opssecrets identity new --name NAME' and send the printed command to an admin",
        )
    recipients = ", ".join(resolved.recipients) or "recipient not known (command or plugin identity)"
    if resolved.note:
        return Check(
            "identity",
            False,
            f"{resolved.where}: {resolved.note}",
            "fix the path in your environment, or unset it to use the keyring",
        )
    if (
        resolved.source == SOURCE_ENV
        and not resolved.recipients
        and not any(v in resolved.where for v in ("SOPS_AGE_KEY_CMD", SSH_KEY_VAR))
        and "AGE-PLUGIN-" not in os.environ.get("SOPS_AGE_KEY", "").upper()
    ):
        return Check(
            "identity",
            False,
            f"{resolved.where}: holds no age identity",
            "point it at a keys.txt, or unset it to use the keyring",
        )
    return Check("identity", True, f"{resolved.where}: {recipients}")


def _keyring_check(resolved: ResolvedIdentity | None) -> Check:
    info = keyring_info()
    if not info.usable:
        return Check(
            "keyring",
            False,
            f"{info.backend}: {info.reason}",
            "identities come from your environment or sops' key file instead",
            needed=False,
        )
    holds = keyring_identity() is not None
    shadow = (
        " (not used: your environment's identity variables take precedence)" if holds and resolved and resolved.source == SOURCE_ENV else ""
    )
    state = "holds an opssecrets identity" if holds else "holds no opssecrets identity"
    return Check("keyring", True, f"{info.backend}, {state}{shadow}", needed=False)


def _plugins_check(rules: Sequence[CreationRule]) -> Check:
    """The age plugins on PATH, and any that a recipient in .sops.yaml needs but is missing."""
    found = plugins_on_path()
    listed = ", ".join(f"{name} ({path})" for name, path in found) or "none on PATH"
    needed = sorted({name for rule in rules for key in rule.age_recipients if (name := plugin_of_recipient(key))})
    missing = [name for name in needed if name not in dict(found)]
    if missing:
        programs = ", ".join(f"{PROGRAM_PREFIX}{name}" for name in missing)
        return Check(
            "plugins",
            False,
            f"{listed}; .sops.yaml has recipients for {programs}, not on PATH",
            f"install {programs} before re-encrypting (changes that need it stop with exit 3)",
            needed=False,
        )
    return Check("plugins", True, listed, needed=False)


def _file_access(
    repo: Repo, sops: Sops, rel: str, recipients: Sequence[str], wrapped_for: frozenset[str], rules: Sequence[CreationRule]
) -> FileAccess:
    known = bool(recipients)
    rule = matching_rule(rules, relative_to_config(repo.root, repo.root / rel)) if rules else None
    in_rule = (bool(rule and set(recipients) & set(rule.age_recipients))) if known else None
    wrapped = bool(set(recipients) & wrapped_for) if known else None
    access = sops.can_decrypt(rel)  # access proven; values never read
    decrypts, why = access.opens, access.why
    if decrypts:
        return FileAccess(rel, in_rule, wrapped, True, "ok")
    if wrapped:
        detail = f"listed for you but does not decrypt: {why}"
        return FileAccess(
            rel,
            in_rule,
            wrapped,
            False,
            detail,
            "check it is not damaged ('git diff'); ask an admin to run 'opssecrets reencrypt'",
        )
    if in_rule:
        return FileAccess(
            rel,
            in_rule,
            wrapped,
            False,
            "in .sops.yaml for you, not yet re-encrypted",
            "ask an admin to run 'opssecrets reencrypt' and commit",
        )
    return FileAccess(rel, in_rule, wrapped, False, "no access (not a recipient)" if known else "does not decrypt")


def run_doctor(context: RepoContext, *, workers: int = 8) -> DoctorReport:
    report = DoctorReport()
    sops_check, sops_bin = _binary_check("sops", SOPS_FLOOR)
    age_check, _ = _binary_check("age", AGE_FLOOR)
    report.checks += [sops_check, age_check]
    repo: Repo | None = None
    locate_error = ""
    try:
        repo = context.repo()
    except OpsError as exc:
        locate_error = exc.message
    config_checks, rules = _config_checks(repo, locate_error)
    report.checks += config_checks
    resolved: ResolvedIdentity | OpsError
    try:
        resolved = resolve_identity()
    except OpsError as exc:
        resolved = exc
    report.checks.append(_identity_check(resolved))
    report.checks.append(_plugins_check(rules))
    if isinstance(resolved, OpsError):
        report.checks.append(_keyring_check(None))
        return report
    report.checks.append(_keyring_check(resolved))
    if repo is None or sops_bin is None or not repo.config_path.is_file() or not resolved.found:
        return report
    files = repo.secret_files()
    if not files:
        return report
    # sops gets exactly the identity resolved here (asked for once: an SSH key's passphrase)
    sops = dataclasses.replace(repo.sops, identity_env=resolved.env)
    jobs = [(repo.relpath(sf.path), sf.metadata.age_recipients) for sf in files]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        report.files = list(pool.map(lambda job: _file_access(repo, sops, job[0], resolved.recipients, job[1], rules), jobs))
    opened = sum(f.decrypts for f in report.files)
    index = next(i for i, c in enumerate(report.checks) if c.name == "identity")
    identity = report.checks[index]
    if opened:
        report.checks[index] = dataclasses.replace(identity, found=f"{identity.found}; sops opens {opened} of {len(files)} secret file(s)")
    else:
        # never "ok" while sops opens nothing with it: then the identity itself is the problem
        if any(f.wrapped for f in report.files):
            fix = "sops cannot open files wrapped for that recipient with what it is given: check your SOPS_AGE_* variables"
        elif resolved.recipients:
            fix = f"send an admin 'opssecrets add-engineer NAME --age-key {resolved.recipients[0]}'"
        else:
            fix = "check that your identity is the one an admin added"
        found = f"{identity.found}; your identity reads none of the {len(files)} secret file(s)"
        report.checks[index] = Check("identity", False, found, fix)
    return report

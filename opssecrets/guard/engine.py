"""One guard run: gather the files, run every check on each, return findings and notes.

Checks per file: the leak rules (plaintext secrets), the ``.sops.yaml`` rule that covers it
(a sops file, fully encrypted, with a mac, for the rule's recipients), sops-nix references
in ``.nix`` files, and with ``known`` the current values of the repository's secrets.
For ``--all`` on a large tree the leak scan runs in worker processes (forked, so the
compiled rules and any known values are inherited, never written anywhere).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opssecrets.guard import sources
from opssecrets.guard.findings import Finding
from opssecrets.guard.scanner import LeakScanner, is_binary
from opssecrets.guard.sopsfiles import SopsConfigView, check_covered_file, covering_rule, load_config
from opssecrets.paths import CONFIG_NAME, state_dir
from opssecrets.policy_leaks import LeakPolicy, load_leak_policy

if TYPE_CHECKING:
    from opssecrets.guard.known import KnownValue

MODES = ("paths", "staged", "all")
RULE_CONFIG_SYMLINK = "sops-config-symlink"
RULE_FILE_SYMLINK = "sops-file-symlink"
# reported even on a path the policy allowlists: they are about who reads what, and the policy itself
_NEVER_ALLOWLISTED = frozenset({RULE_CONFIG_SYMLINK, "policy-changed", "recipient-added", "recipient-granted"})
PARALLEL_MIN_BYTES = 24 << 20  # below this a process pool costs more than it saves
CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class CheckOptions:
    mode: str = "paths"  # "paths", "staged" or "all"
    paths: tuple[str, ...] = ()
    known: bool = False
    jobs: int | None = None  # worker processes for --all; None: the CPU count
    base: str | None = None  # --base REF: review recipient changes in .sops.yaml since REF


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0
    binary: list[str] = field(default_factory=list)  # files skipped as binary (a NUL in the first 8 KiB)


# Set in the parent before forking workers; the workers inherit it.
_SCAN_STATE: tuple[LeakScanner, list[KnownValue]] | None = None


def _scan_content(rel: str, data: bytes) -> list[Finding]:
    assert _SCAN_STATE is not None
    scanner, known = _SCAN_STATE
    findings = scanner.scan(rel, data)
    if known and not scanner.path_allowed(rel):
        from opssecrets.guard.known import known_findings

        findings.extend(known_findings(rel, data, known))
    return findings


def _scan_chunk(root: str, rels: list[str]) -> tuple[list[Finding], list[str], list[str]]:
    """Read and scan working-tree files (run in a worker, or in-process)."""
    findings: list[Finding] = []
    notes: list[str] = []
    binary: list[str] = []
    for rel in rels:
        item = sources.read_worktree(Path(root), rel)
        if item.data is None:
            notes.append(f"{rel}: {item.note}")
            continue
        if is_binary(item.data):
            binary.append(rel)
        findings.extend(_scan_content(rel, item.data))
    return findings, notes, binary


def _chunks(items: list[sources.Item]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for item in items:
        chunk.append(item.rel)
        size += item.size
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _scan_lazy(root: Path, items: list[sources.Item], jobs: int | None, report: CheckReport) -> None:
    total = sum(item.size for item in items)
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    chunks = list(_chunks(items))
    results: Iterable[tuple[list[Finding], list[str], list[str]]]
    if workers > 1 and total >= PARALLEL_MIN_BYTES and len(chunks) > 1 and hasattr(os, "fork"):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
            results = list(pool.map(_scan_chunk, [str(root)] * len(chunks), chunks))
    else:
        results = (_scan_chunk(str(root), chunk) for chunk in chunks)
    for findings, notes, binary in results:
        report.findings.extend(findings)
        report.notes.extend(notes)
        report.binary.extend(binary)


def run_check(root: Path, options: CheckOptions) -> CheckReport:
    """Run the guard on ``root`` (the repository root) and return what it found."""
    global _SCAN_STATE
    from opssecrets.fingerprint import fingerprint_key

    policy = _leak_policy(root, options.base)
    scanner = LeakScanner(policy, fingerprint_key(state_dir(root)))
    report = CheckReport()
    staged = options.mode == "staged"
    items, read, config_data = _sources(root, options)
    _SCAN_STATE = (scanner, _known_values(root, options, report))
    try:
        config = load_config(config_data)
        if config.problem is not None:
            report.findings.append(config.problem)
        if _is_symlink(root, CONFIG_NAME, staged):
            report.findings.append(_config_symlink_finding(root, staged))
        base_config = _review_base(root, options, config_data, policy, report)
        report.findings.extend(_secret_file_symlinks(root, items, staged, policy, [config, base_config]))
        readable = [item for item in items if item.note is None]
        report.notes.extend(f"{item.rel}: {item.note}" for item in items if item.note is not None)
        report.checked = len(readable)
        _scan_leaks(root, readable, options.jobs, report)
        _check_structure(root, readable, config, policy, read, staged, report)

        from opssecrets.guard.hosts import host_findings

        report.findings.extend(host_findings(root, read, config_data, [item.rel for item in readable], options.mode))
        report.findings = _reportable(report.findings, scanner)
        report.binary.sort()
    finally:
        _SCAN_STATE = None
    return report


def _sources(root: Path, options: CheckOptions) -> tuple[list[sources.Item], sources.Reader, bytes | None]:
    """The files to check, how to read any other file, and ``.sops.yaml`` as the mode sees them."""
    if options.mode == "staged":
        items = sources.from_index(root, list(options.paths))
        # a .sops.yaml that is not in the index yet is read from the working tree
        return items, sources.index_reader(root), sources.index_reader(root, sources.worktree_reader(root))(CONFIG_NAME)
    read = sources.worktree_reader(root)
    items = sources.from_tracked(root) if options.mode == "all" else sources.from_paths(root, list(options.paths))
    return items, read, read(CONFIG_NAME)


def _known_values(root: Path, options: CheckOptions, report: CheckReport) -> list[KnownValue]:
    """The repository's decrypted values to look for in plaintext (``--known``), else none."""
    if not options.known:
        return []
    from opssecrets.guard.known import collect_known_values
    from opssecrets.repo import Repo

    known, known_notes = collect_known_values(Repo(root))
    report.notes.extend(known_notes)
    return known


def _review_base(
    root: Path, options: CheckOptions, config_data: bytes | None, policy: LeakPolicy, report: CheckReport
) -> SopsConfigView | None:
    """With ``--base REF``: review recipient and policy changes since REF; the ``.sops.yaml`` at REF."""
    if options.base is None:
        return None
    from opssecrets import git
    from opssecrets.guard.policy_review import review_policies
    from opssecrets.guard.review import review_recipients

    review_findings, review_notes = review_recipients(root, options.base, config_data, policy.review_recipients)
    report.findings.extend(review_findings)
    report.notes.extend(review_notes)
    report.findings.extend(review_policies(root, options.base, staged=options.mode == "staged"))
    return load_config(git.show_file(root, options.base, CONFIG_NAME))


def _scan_leaks(root: Path, readable: list[sources.Item], jobs: int | None, report: CheckReport) -> None:
    """The leak scan (and known values): the bulk of the work. Files not read yet are read by workers."""
    for item in readable:
        if item.data is None:
            continue
        if is_binary(item.data):
            report.binary.append(item.rel)
        report.findings.extend(_scan_content(item.rel, item.data))
    lazy = [item for item in readable if item.data is None]
    if lazy:
        _scan_lazy(root, lazy, jobs, report)


def _check_structure(
    root: Path,
    readable: list[sources.Item],
    config: SopsConfigView,
    policy: LeakPolicy,
    read: sources.Reader,
    staged: bool,
    report: CheckReport,
) -> None:
    """Files a ``.sops.yaml`` rule covers, and sops-nix declarations in .nix files: these checks
    need the content of the few files they apply to."""
    nix_default: str | None = None
    nix_default_known = False
    for item in readable:
        rule = covering_rule(config, item.rel, policy.coverage_skip_suffixes, policy.coverage_skip_paths)
        is_nix = item.rel.endswith(".nix")
        if rule is None and not is_nix:
            continue
        data = item.data if item.data is not None else read(item.rel)
        if data is None:
            continue
        if rule is not None:
            report.findings.extend(check_covered_file(item.rel, data, rule))
        if is_nix and b"sops" in data:
            from opssecrets.guard.sopsnix import check_nix_file, default_from_files

            if not nix_default_known:
                nix_default = default_from_files(_nix_files_with_default(root, read, staged))
                nix_default_known = True
            report.findings.extend(check_nix_file(item.rel, data, read, nix_default))
            report.notes.extend(_restart_notes(root, item.rel, data))


def _reportable(findings: list[Finding], scanner: LeakScanner) -> list[Finding]:
    """Findings without duplicates, in file order, minus those on paths the policy allowlists
    (never the ones about who reads what, nor ``.sops.yaml``'s own problems)."""
    return sorted(
        {
            f
            for f in findings
            if f.rule in _NEVER_ALLOWLISTED
            or (f.path == CONFIG_NAME and f.rule.startswith("sops-config"))
            or not scanner.path_allowed(f.path)
        },
        key=lambda f: (f.path, f.line or 0, f.rule, f.message),
    )


def _leak_policy(root: Path, base: str | None) -> LeakPolicy:
    """The leak policy: with ``--base REF`` as committed at REF, so a branch never reviews itself."""
    if base is None:
        return load_leak_policy(root)
    from opssecrets.guard.review import check_ref
    from opssecrets.policy_leaks import load_leak_policy_at

    check_ref(root, base)
    return load_leak_policy_at(root, base)


def _is_symlink(root: Path, rel: str, staged: bool) -> bool:
    if staged:
        from opssecrets import git

        entry = git.index_entry(root, rel)
        return entry is not None and entry[0] == sources.SYMLINK_MODE
    return os.path.islink(root / rel)


def _config_symlink_finding(root: Path, staged: bool) -> Finding:
    target = ""
    if not staged:
        with contextlib.suppress(OSError):
            target = f" (to {os.readlink(root / CONFIG_NAME)})"
    return Finding(
        CONFIG_NAME,
        None,
        RULE_CONFIG_SYMLINK,
        f"is a symlink{target}: sops would follow it to a file that is not reviewed as {CONFIG_NAME}, "
        "and opssecrets refuses to; replace the link with the file itself",
    )


def _secret_file_symlinks(
    root: Path, items: list[sources.Item], staged: bool, policy: LeakPolicy, configs: list[SopsConfigView | None]
) -> list[Finding]:
    """A finding for each symlink at a path a ``.sops.yaml`` rule (now or at the base) covers."""
    out: list[Finding] = []
    for item in items:
        if item.note is None or item.rel == CONFIG_NAME or not _is_symlink(root, item.rel, staged):
            continue
        skip = (policy.coverage_skip_suffixes, policy.coverage_skip_paths)
        if any(view is not None and covering_rule(view, item.rel, *skip) is not None for view in configs):
            out.append(
                Finding(
                    item.rel,
                    None,
                    RULE_FILE_SYMLINK,
                    "a secret file that is a symlink: sops and sops-nix would follow it to a file this check "
                    "does not see; commit the encrypted file itself",
                )
            )
    return out


def _nix_files_with_default(root: Path, read: sources.Reader, cached: bool) -> dict[str, bytes]:
    """The .nix files that set ``defaultSopsFile`` (found with ``git grep``), as the check reads them."""
    from opssecrets import git

    out: dict[str, bytes] = {}
    for rel in git.grep_files(root, "defaultSopsFile", "*.nix", cached=cached):
        data = read(rel)
        if data is not None:
            out[rel] = data
    return out


def _restart_notes(root: Path, rel: str, data: bytes) -> list[str]:
    """Token secrets declared without restartUnits (a note, not a finding: sops-nix#220)."""
    from opssecrets.restarts import missing_restart_notes

    return missing_restart_notes(root, rel, data.decode("utf-8", "replace"))

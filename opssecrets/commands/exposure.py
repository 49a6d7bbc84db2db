"""``opssecrets exposure``: who outside today's recipients could know each current value."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from opssecrets.commands.common import json_option, pass_repo_context, say
from opssecrets.errors import Findings
from opssecrets.repo import RepoContext


@click.command("exposure")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.option("--strict", is_flag=True, help="Exit 1 when any value is exposed or the history is incomplete (for CI).")
@pass_repo_context
def exposure(context: RepoContext, paths: tuple[Path, ...], as_json: bool, strict: bool) -> int:
    """Who could know each current value, read from git history (needs an identity).

    For every key of every current sops file (or of PATHs): each reader who is not a
    recipient today but could know its value, because a past version held the same value
    for them (same value), was encrypted with the same data key as a version that held it
    (same data key), or because the value is in a plaintext blob of some commit (in
    plaintext; the reader is then "repository readers"). Versions your identity cannot
    decrypt are listed as not checked. Values are compared in memory and never shown.
    The findings also show in 'opssecrets status' as exposed until the value changes.
    """
    from opssecrets.exposure import audit, save_for_status
    from opssecrets.output import emit_json

    repo = context.repo()
    only = [repo.relpath(path) for path in paths] if paths else None
    report = audit(repo, only)
    if only is None:
        save_for_status(repo, report)
    if as_json:
        emit_json(report.to_json())
    else:
        for finding in report.exposures:
            click.echo(
                f"{finding.file} {finding.key}: {finding.reader} could know it ({finding.how}, "
                f"{finding.found_in} at {finding.since_commit[:10]}); fix: {finding.fix}"
            )
        per_file = Counter((item.file, item.reason) for item in report.not_checked)
        for (file, reason), count in sorted(per_file.items()):
            say(f"not checked: {file}: {count} version(s): {reason}")
        exposed = len({(f.file, f.key) for f in report.exposures})
        say(f"{report.versions} file versions read; {exposed} value(s) exposed, {len(report.not_checked)} version(s) not checked")
        if not report.complete:
            say("warning: this is a shallow clone, so the audit is incomplete: run 'git fetch --unshallow' and audit again")
    if strict and report.exposures:
        raise Findings(f"{len(report.exposures)} exposure(s): apply each line's fix, then run 'opssecrets exposure' again")
    if strict and not report.complete:
        raise Findings("the history is incomplete (shallow clone): run 'git fetch --unshallow', then 'opssecrets exposure' again")
    return 0

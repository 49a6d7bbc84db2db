"""``opssecrets check``: the pre-commit guard (thin: options to :mod:`opssecrets.guard.engine`)."""

from __future__ import annotations

import sys

import click

from opssecrets.commands.common import json_option, pass_repo_context
from opssecrets.errors import EXIT_FINDINGS, EXIT_OK, BadInput
from opssecrets.repo import RepoContext


@click.command("check")
@click.option("--staged", is_flag=True, help="Check what is staged in the git index (the staged content).")
@click.option("--all", "all_files", is_flag=True, help="Check every tracked file.")
@json_option(help='Print {"findings": [{"path", "line", "rule", "message"}], "binary": [PATH]}.')
@click.option("--known", is_flag=True, help="Also report files holding the current value of any secret (needs an identity).")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes for --all (default: CPU count).")
@click.option(
    "--base",
    metavar="REF",
    default=None,
    help=(
        "Also review changes since REF: recipients (any key type) added to .sops.yaml, and changes to policies/*.toml, "
        "are findings; the leak policy used is the one committed at REF."
    ),
)
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@pass_repo_context
def check(
    context: RepoContext,
    staged: bool,
    all_files: bool,
    as_json: bool,
    known: bool,
    jobs: int | None,
    base: str | None,
    paths: tuple[str, ...],
) -> int:
    """Stop plaintext secrets and unencrypted sops files before they reach git.

    With PATHs (what pre-commit passes) checks those files; --staged checks the index;
    --all checks every tracked file; --base REF (alone or with those) reviews who gained
    access in .sops.yaml and what policies/*.toml loosen since REF, with REF's policy.
    Exit 0 clean, 1 findings, 2 bad usage, 3 environment.
    """
    from opssecrets.guard.engine import CheckOptions, run_check

    if staged and all_files:
        raise BadInput("--staged and --all do not go together: pick one")
    if all_files and paths:
        raise BadInput("--all checks every tracked file: drop the paths, or drop --all")
    if not (staged or all_files or paths or base):
        raise BadInput("nothing to check: give PATHs, --staged (the git hook), --all or --base REF")
    mode = "staged" if staged else "all" if all_files else "paths"
    root = context.repo(config_symlink_ok=True).root
    report = run_check(root, CheckOptions(mode=mode, paths=paths, known=known, jobs=jobs, base=base))

    for note in report.notes:
        sys.stderr.write(f"opssecrets: note: {note}\n")
    if as_json:
        from opssecrets.output import emit_json

        emit_json({"findings": [finding.as_dict() for finding in report.findings], "binary": report.binary})
    else:
        sys.stdout.writelines(finding.render() + "\n" for finding in report.findings)
        if report.findings:
            skipped = f", {len(report.binary)} binary skipped" if report.binary else ""
            sys.stderr.write(
                f"opssecrets check: {len(report.findings)} finding(s) in {report.checked} file(s){skipped}; "
                "see docs/guard.md to fix or allow them\n"
            )
    return EXIT_FINDINGS if report.findings else EXIT_OK


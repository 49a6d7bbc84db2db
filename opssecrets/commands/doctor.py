"""``opssecrets doctor``: sops, age, ``.sops.yaml``, the identity in use, and what it can read."""

from __future__ import annotations

import click

from opssecrets.commands.common import json_option, pass_repo_context
from opssecrets.errors import EXIT_FINDINGS
from opssecrets.repo import RepoContext


@click.command("doctor")
@json_option(help="Print the checks and the file table as JSON.")
@pass_repo_context
def doctor(context: RepoContext, as_json: bool) -> int:
    """Check this machine: sops and age, .sops.yaml, which identity sops would use, what it decrypts.

    Exits 0 only when everything needed works; each problem is printed with its fix.
    """
    from opssecrets.doctor import run_doctor
    from opssecrets.output import emit_json, render_table

    report = run_doctor(context)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checks": [c.__dict__ for c in report.checks],
                "files": [{**f.__dict__, "problem": f.problem} for f in report.files],
                "problems": [{"problem": p, "fix": fix} for p, fix in report.problems()],
            }
        )
        return 0 if report.ok else EXIT_FINDINGS
    rows = [{"check": c.name, "state": _state(c.ok, c.needed), "found": c.found} for c in report.checks]
    click.echo(render_table(rows, ["check", "state", "found"]))
    if report.files:
        click.echo("")
        click.echo(
            render_table(
                [f.__dict__ for f in report.files],
                ["file", "in_rule", "wrapped", "decrypts", "status"],
                ["file", "you in .sops.yaml rule", "wrapped for you", "decrypts", "status"],
            )
        )
    notes = dict.fromkeys(f"note: {c.name}: {c.fix}" for c in report.checks if not c.ok and not c.needed and c.fix)
    for note in notes:
        click.echo(note)
    problems = report.problems()
    if problems:
        click.echo("", err=True)
        for problem, fix in problems:
            click.echo(f"problem: {problem}\n  fix: {fix}", err=True)
        click.echo(f"doctor: {len(problems)} problem(s)", err=True)
        return EXIT_FINDINGS
    click.echo("doctor: all good")
    return 0


def _state(ok: bool, needed: bool) -> str:
    if ok:
        return "ok"
    return "PROBLEM" if needed else "note"

"""`opssecrets lint`: check .sops.yaml."""

from __future__ import annotations

import click

from opssecrets.commands.common import json_option, pass_repo_context
from opssecrets.errors import EXIT_FINDINGS
from opssecrets.lint import lint_text
from opssecrets.output import emit_json
from opssecrets.repo import RepoContext


@click.command("lint")
@json_option
@pass_repo_context
def lint(context: RepoContext, as_json: bool) -> int:
    """Check .sops.yaml: aliases, keys, regexes, unreachable rules (errors); coverage (warnings)."""
    repo = context.repo()
    path = repo.require_config()
    problems = lint_text(path.read_text(encoding="utf-8"), str(path.name))
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        emit_json({"problems": [p.as_dict() for p in problems]})
    else:
        for problem in problems:
            click.echo(f"{path.name}: {problem.level}: {problem.where}: {problem.message}")
        if not problems:
            click.echo(f"{path.name}: ok")
    return EXIT_FINDINGS if errors else 0

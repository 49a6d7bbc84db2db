"""What the command modules share: option bundles, the repository context, plan output.

Kept light: the guard (``opssecrets check``, a pre-commit hook) imports it at startup.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import click

from opssecrets.output import emit_json, render_table
from opssecrets.repo import RepoContext

if TYPE_CHECKING:
    from opssecrets.transaction import Plan

F = TypeVar("F", bound=Callable[..., Any])

JSON_HELP = "Print JSON for scripts instead of a table."

# Every command gets the repository from here, resolved once by the group from --repo.
pass_repo_context = click.make_pass_decorator(RepoContext, ensure=True)


@overload
def json_option(func: F, /) -> F: ...
@overload
def json_option(*, help: str = JSON_HELP) -> Callable[[F], F]: ...
def json_option(func: F | None = None, /, *, help: str = JSON_HELP) -> F | Callable[[F], F]:
    """``--json`` (as ``as_json``): ``@json_option``, or ``@json_option(help=...)`` where the
    command says what its JSON holds."""
    decorator: Callable[[F], F] = click.option("--json", "as_json", is_flag=True, help=help)
    return decorator(func) if func is not None else decorator


def dry_run_option(func: F) -> F:
    return click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")(func)


def file_option(func: F) -> F:
    """``--file`` of the commands that take one secret (``opssecrets/findsecret.py`` reads it)."""
    return click.option(
        "--file",
        "file",
        metavar="FILE",
        default=None,
        help="The encrypted file holding KEY, as a path from here or from the repository root (default: the policy's "
        "default file, secrets/secrets.yaml, if it holds KEY, else the one file that does).",
    )(func)


def say(message: str) -> None:
    """Diagnostics and notes go to stderr; stdout is for data."""
    click.echo(message, err=True)


def show_plan(plan: Plan, *, dry_run: bool, as_json: bool = False) -> None:
    """Print what a plan does (or would do): the config diff and a table of files."""
    after = plan.after or plan.before
    before = plan.before or plan.after
    assert after is not None and before is not None
    rows = [
        {
            "file": change.relpath,
            "added": [after.label_for_key(k) for k in change.added],
            "removed": [before.label_for_key(k) for k in change.removed],
            "data key": ("rotated (no rule covers it)" if change.no_rule else "rotated") if change.rotate else "kept",
        }
        for change in plan.files
    ]
    if as_json:
        emit_json({"dry_run": dry_run, "config_changed": plan.config_changed, "files": rows, "notes": plan.notes})
        return
    if plan.config_changed and dry_run:
        old_text = plan.before.text if plan.before is not None else ""
        old_lines, new_lines = old_text.splitlines(keepends=True), after.text.splitlines(keepends=True)
        diff = difflib.unified_diff(old_lines, new_lines, ".sops.yaml", ".sops.yaml (new)")
        click.echo("".join(diff).rstrip("\n"))
    verb = "would change" if dry_run else "changed"
    what = ".sops.yaml" if plan.config_changed else "no change to .sops.yaml"
    click.echo(f"{verb}: {what}; {len(plan.files)} secret file(s)")
    if rows:
        click.echo(render_table(rows, ["file", "added", "removed", "data key"]))
    for note in plan.notes:
        say(f"note: {note}")

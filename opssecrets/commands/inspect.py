"""Read-only views: who the recipients are, and who can read each encrypted file."""

from __future__ import annotations

from pathlib import Path

import click

from opssecrets.access import file_access
from opssecrets.commands.common import json_option, pass_repo_context
from opssecrets.output import emit
from opssecrets.repo import RepoContext
from opssecrets.sopsconfig import SopsConfig, short_name


@click.command()
@json_option
@pass_repo_context
def recipients(context: RepoContext, as_json: bool) -> int:
    """List every recipient: name, role (and where it came from), key, and the rules each is in."""
    repo = context.repo()
    config = SopsConfig.load(repo.require_config())
    rows = [
        {
            "name": short_name(r.name) if r.name else None,
            "anchor": r.name,
            "role": r.role,
            "role_from": r.role_from,
            "type": r.key_type,
            "plugin": r.plugin,
            "key": r.key,
            "rules": [
                rule.index + 1
                for rule in config.rules
                if r.key in rule.age_recipients or any(r.key == ident for g in rule.groups for _, ident in g.other)
            ],
        }
        for r in config.recipients
    ]
    emit(
        rows,
        ["name", "role", "role_from", "type", "plugin", "key", "rules"],
        as_json=as_json,
        key="recipients",
        headers=["name", "role", "role from", "type", "plugin", "key", "rules"],
    )
    return 0


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@pass_repo_context
def access(context: RepoContext, paths: tuple[Path, ...], as_json: bool) -> int:
    """For each encrypted file: its rule, who should read it, who can, and whether they differ."""
    repo = context.repo()
    config = SopsConfig.load(repo.require_config())
    only = [repo.relpath(p) for p in paths] if paths else None
    rows = file_access(repo, config, only)
    if not as_json:  # JSON keeps null; people read the words
        rows = [{**row, "rule": "no rule" if row["rule"] is None else row["rule"]} for row in rows]
    emit(
        rows,
        ["file", "rule", "should_read", "can_read", "differs"],
        as_json=as_json,
        key="files",
        headers=["file", "rule", "should read", "can read", "differs"],
    )
    return 0

"""``diff`` and ``textconv``: what changed in encrypted files, never a value."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from opssecrets.commands.common import json_option, pass_repo_context
from opssecrets.errors import BadInput, OpsError
from opssecrets.repo import Repo, RepoContext


def _labeller(repo: Repo) -> Callable[[str], str]:
    """A recipient as people know it: its .sops.yaml name next to the key, when there is one."""
    names: dict[str, str] = {}
    try:
        from opssecrets.sopsconfig import SopsConfig

        config = SopsConfig.load(repo.config_path)
        names = {r.key: r.name for r in config.recipients if r.name is not None}
    except Exception:  # no or unparseable .sops.yaml: keys alone still say who
        names = {}

    def label(key: str) -> str:
        short = key if len(key) <= 24 else key[:16] + "..." + key[-4:]
        return f"{names[key]} ({short})" if key in names else short

    return label


@click.command("diff")
@click.argument("args", nargs=-1, metavar="[REF] [PATH]...")
@json_option
@pass_repo_context
def diff(context: RepoContext, args: tuple[str, ...], as_json: bool) -> int:
    """Per sops file changed since REF (default HEAD): keys added, removed and changed, recipients added and removed.

    Values never appear. A value counts as changed when both sides decrypt (in memory,
    with your identity) to different values; without an identity that opens them the
    values are reported as not compared. Exit 0 (also when something changed), 2 bad REF.
    """
    from opssecrets import git
    from opssecrets.output import emit_json
    from opssecrets.sopsdiff import diff_sides, read_side, render_text, sops_decryptor

    repo = context.repo()
    ref = "HEAD"
    paths = list(args)
    if paths and not paths[0].startswith("-") and not (Path(paths[0]).exists()) and git.is_commit(repo.root, paths[0]):
        ref = paths.pop(0)
    elif paths and paths[0].startswith("-"):
        raise BadInput(f"{paths[0]}: not a REF or PATH; give 'opssecrets diff [REF] [PATH]...'")
    if not git.is_commit(repo.root, ref):
        raise BadInput(f"{ref}: no such commit in {repo.root}; commit first, or name a REF (e.g. origin/main)")
    specs = [repo.relpath(Path(p)) for p in paths]
    for raw, rel in zip(paths, specs, strict=True):
        if not (repo.root / rel).exists() and git.show_file(repo.root, ref, rel) is None:
            raise BadInput(f"{raw}: neither a commit nor a file here or at {ref}; give 'opssecrets diff [REF] [PATH]...'")
    decrypt = sops_decryptor(repo.sops)
    diffs = []
    for rel in git.changed_files(repo.root, ref, specs):
        path = repo.root / rel
        after = read_side(rel, path.read_bytes() if path.is_file() else None)
        before = read_side(rel, git.show_file(repo.root, ref, rel))
        if before is None and after is None:
            continue  # not a sops file on either side
        diffs.append(diff_sides(rel, before, after, decrypt))
    diffs = [d for d in diffs if d.status != "unchanged"]
    if as_json:
        emit_json({"ref": ref, "files": [d.as_dict() for d in diffs]})
    else:
        sys.stdout.write(render_text(diffs, _labeller(repo)))
        if not diffs:
            click.echo(f"no sops file changed since {ref}", err=True)
    return 0


@click.command("textconv")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_repo_context
def textconv(context: RepoContext, file: Path) -> int:
    """Print a sops file for 'git diff': recipients and keys, each value as a keyed fingerprint.

    The fingerprint is HMAC-SHA256 with a key kept in this clone (.git/opssecrets/, mode
    0600), never a plain hash. A file that is not a sops file is printed as it is. Set it up
    with '*.yaml diff=sopsdiffer' in .gitattributes and 'git config diff.sopsdiffer.textconv
    "opssecrets textconv"' (docs/guard.md).
    """
    from opssecrets.fingerprint import fingerprint_key
    from opssecrets.sopsdiff import read_side, sops_decryptor, textconv_text

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BadInput(f"{file}: cannot read it ({exc.strerror})") from None
    side = read_side(file.name, data)
    if side is None:
        sys.stdout.buffer.write(data)
        return 0
    repo = context.repo()
    key = fingerprint_key(repo.state_dir)
    try:
        decrypt = sops_decryptor(repo.sops)
    except OpsError as exc:
        # git diff must still work where sops is missing: keys and recipients need no sops
        reason = exc.message
        decrypt = lambda _side: reason  # noqa: E731
    sys.stdout.write(textconv_text(side, decrypt, key, _labeller(repo)))
    return 0


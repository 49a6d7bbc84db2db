"""Commands that change who can read what: init, engineers, hosts, projects, reencrypt."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import click

from opssecrets import changes
from opssecrets import recipients as edits
from opssecrets.commands.common import dry_run_option, json_option, pass_repo_context, say, show_plan
from opssecrets.errors import EXIT_FINDINGS, BadInput
from opssecrets.keys import age_key_from, parse_ssh_public_key
from opssecrets.output import progress, render_table
from opssecrets.repo import Repo, RepoContext
from opssecrets.sopsconfig import SopsConfig, anchor_for, check_name, short_name
from opssecrets.templates import initial_config
from opssecrets.transaction import Plan

AGE_KEY_HELP = "The engineer's age recipient (age1..., from 'age-keygen -y' or 'opssecrets identity show')."
SSH_KEY_HELP = "An SSH ed25519 public key line or .pub file; converted to age as ssh-to-age does."


def _change(
    context: RepoContext,
    edit_fn: Callable[[SopsConfig], edits.Edit],
    *,
    dry_run: bool,
    as_json: bool = False,
    folders: tuple[str, ...] = (),
) -> changes.Change:
    """Run the edit through ``changes.edit_recipients`` and print what it did (or would do)."""
    change = changes.edit_recipients(context.repo(), edit_fn, folders=folders, dry_run=dry_run, progress=progress)
    show_plan(change.plan, dry_run=dry_run, as_json=as_json)
    return change


def _exposed_report(plan: Plan, reader: str) -> None:
    rotated = [change for change in plan.files if change.rotate]
    if not rotated:
        return
    rows = [{"file": change.relpath, "key": key} for change in rotated for key in change.keys]
    say(f"{reader} could read these values; their data keys are rotated, but the values themselves must be re-issued:")
    click.echo(render_table(rows, ["file", "key"]), err=True)


@click.command()
@click.option("--admin", "admin", required=True, help="The first admin's name (becomes the anchor admin_NAME).")
@click.option("--age-key", help=AGE_KEY_HELP)
@click.option("--ssh-key", help=SSH_KEY_HELP)
@click.option("--host", "host", help="A host that reads the platform secrets (anchor host_NAME).")
@click.option("--ssh-host-key", help="The host's /etc/ssh/ssh_host_ed25519_key.pub (line or file).")
@pass_repo_context
def init(context: RepoContext, admin: str, age_key: str | None, ssh_key: str | None, host: str | None, ssh_host_key: str | None) -> int:
    """Create .sops.yaml in the platform layout, and secrets/."""
    root = context.new_root()
    repo = Repo(root)
    changes.refuse_existing_config(repo)  # first: before any of the options is read
    admin = short_name(anchor_for(admin, "admin"))
    if (host is None) != (ssh_host_key is None):
        raise BadInput("--host and --ssh-host-key go together: give both or neither")
    admin_key = age_key_from(age_key, ssh_key)
    host_key = None
    if host is not None:
        host = short_name(anchor_for(host, "host"))
        assert ssh_host_key is not None
        host_key = parse_ssh_public_key(ssh_host_key).age_recipient
    changes.create_config(repo, initial_config(admin, admin_key, host, host_key), progress=progress)
    click.echo(f"created {repo.config_path} (admin {admin}" + (f", host {host})" if host else ")"))
    return 0


@click.command("add-engineer")
@click.argument("name")
@click.option("--age-key", help=AGE_KEY_HELP)
@click.option("--ssh-key", help=SSH_KEY_HELP)
@click.option("--admin", is_flag=True, help="Admins read every rule (anchor admin_NAME).")
@click.option("--forgejo-user", help="Take the engineer's SSH ed25519 key from their Forgejo profile ({url}/{user}.keys).")
@click.option("--forgejo-url", help="The Forgejo base URL (default: $OPSSECRETS_FORGEJO_URL, then the policy's forgejo_url).")
@click.option("--yes", is_flag=True, help="With --forgejo-user: take their only ed25519 key without asking.")
@click.option("--project", "projects", multiple=True, help="Join this project's rule (repeatable).")
@dry_run_option
@json_option
@pass_repo_context
def add_engineer(
    context: RepoContext,
    name: str,
    age_key: str | None,
    ssh_key: str | None,
    forgejo_user: str | None,
    forgejo_url: str | None,
    yes: bool,
    admin: bool,
    projects: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> int:
    """Add an engineer and re-encrypt the files they may now read."""
    if forgejo_user is None:
        if forgejo_url is not None or yes:
            raise BadInput("--forgejo-url and --yes go with --forgejo-user")
        key = age_key_from(age_key, ssh_key)
    else:
        if age_key is not None or ssh_key is not None:
            raise BadInput("give one of --age-key, --ssh-key or --forgejo-user")
        from opssecrets.commands.forgejo_keys import key_from_forgejo

        repo = context.repo()
        repo.require_config()
        check_name(name)
        key = key_from_forgejo(forgejo_url, forgejo_user, yes=yes, root=repo.root).age_recipient
    _change(context, lambda c: edits.add_engineer(c, name, key, admin=admin, projects=projects), dry_run=dry_run, as_json=as_json)
    return 0


@click.command("remove-engineer")
@click.argument("name")
@dry_run_option
@json_option
@pass_repo_context
def remove_engineer(context: RepoContext, name: str, dry_run: bool, as_json: bool) -> int:
    """Remove an engineer: re-encrypt and rotate the data key of every file they could read."""
    return _remove(context, name, "engineer", dry_run=dry_run, as_json=as_json)


def _remove(context: RepoContext, name: str, role: str, *, dry_run: bool, as_json: bool) -> int:
    change = _change(context, lambda c: edits.remove(c, name, role=role)[0], dry_run=dry_run, as_json=as_json)
    if not dry_run and not as_json:
        _exposed_report(change.plan, change.exposed_to or name)
    return 0


@click.command("add-host")
@click.argument("name")
@click.option("--ssh-host-key", required=True, help="The host's /etc/ssh/ssh_host_ed25519_key.pub (line or file).")
@click.option("--project", "projects", multiple=True, help="Only this project's rule (repeatable); default: every rule.")
@click.option("--replace", is_flag=True, help="The host was reinstalled: replace its key, re-encrypt and rotate.")
@click.option(
    "--compromised", is_flag=True, help="With --replace: the old key may be in other hands; mark what it could read as exposed."
)
@dry_run_option
@json_option
@pass_repo_context
def add_host(
    context: RepoContext,
    name: str,
    ssh_host_key: str,
    projects: tuple[str, ...],
    replace: bool,
    compromised: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """Add a host (its SSH host key, converted to age), or --replace a reinstalled host's key."""
    key = parse_ssh_public_key(ssh_host_key).age_recipient
    if compromised and not replace:
        raise BadInput("--compromised goes with --replace (a new key for a host whose old key may be in other hands)")
    if replace:
        if projects:
            raise BadInput("--replace keeps the host's rules; drop --project")
        edit_fn = partial(edits.replace_host_key, name=name, key=key, compromised=compromised)
        change = _change(context, edit_fn, dry_run=dry_run, as_json=as_json)
        if compromised and not dry_run and not as_json:
            _exposed_report(change.plan, f"{name}'s old key")
    else:
        check_name(name)
        _change(context, lambda c: edits.add_host(c, name, key, projects=projects), dry_run=dry_run, as_json=as_json)
    return 0


@click.command("remove-host")
@click.argument("name")
@dry_run_option
@json_option
@pass_repo_context
def remove_host(context: RepoContext, name: str, dry_run: bool, as_json: bool) -> int:
    """Remove a host: re-encrypt and rotate the data key of every file it could read."""
    return _remove(context, name, "host", dry_run=dry_run, as_json=as_json)


@click.command("add-project")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="An engineer who reads it (repeatable).")
@click.option("--host", "hosts", multiple=True, help="A host that reads it (repeatable); default: every host.")
@dry_run_option
@pass_repo_context
def add_project(context: RepoContext, name: str, members: tuple[str, ...], hosts: tuple[str, ...], dry_run: bool) -> int:
    """Add a rule for secrets/projects/NAME/, read by the admins, its hosts and members."""
    folder = f"secrets/projects/{name}"
    _change(context, lambda c: edits.add_project(c, name, members, hosts), dry_run=dry_run, folders=(folder,))
    return 0


@click.command()
@click.argument("engineer")
@click.argument("project")
@dry_run_option
@pass_repo_context
def grant(context: RepoContext, engineer: str, project: str, dry_run: bool) -> int:
    """Let an engineer read a project's secrets."""
    _change(context, lambda c: edits.grant(c, engineer, project), dry_run=dry_run)
    return 0


@click.command()
@click.argument("engineer")
@click.argument("project")
@dry_run_option
@pass_repo_context
def revoke(context: RepoContext, engineer: str, project: str, dry_run: bool) -> int:
    """Stop an engineer reading a project: re-encrypt and rotate that project's files."""
    change = _change(context, lambda c: edits.revoke(c, engineer, project), dry_run=dry_run)
    if not dry_run:
        _exposed_report(change.plan, engineer)
    return 0


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if any file's recipients differ from its rule.")
@dry_run_option
@json_option
@pass_repo_context
def reencrypt(context: RepoContext, paths: tuple[Path, ...], check: bool, dry_run: bool, as_json: bool) -> int:
    """Bring files whose recipients differ from their rule in line (sops updatekeys)."""
    repo = context.repo()
    repo.require_config()
    only = [repo.relpath(p) for p in paths] if paths else None
    if only is not None:
        missing = [p for p in only if not (repo.root / p).is_file()]
        if missing:
            raise BadInput(f"{missing[0]}: no such file")
    if check or dry_run:
        plan = changes.reencrypt(repo, only, dry_run=True)
        show_plan(plan, dry_run=True, as_json=as_json)
        return EXIT_FINDINGS if check and plan.files else 0
    plan = changes.reencrypt(repo, only, progress=progress)
    show_plan(plan, dry_run=False, as_json=as_json)
    return 0

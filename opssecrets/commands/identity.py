"""``opssecrets identity new|import|show|export|forget``: the operator's age identity.

The identity itself is printed only by ``identity export`` (and by ``identity new
--stdout``, asked for on a machine without a keyring); everything else shows the
recipient, which is public.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from opssecrets import identity as ident
from opssecrets.commands.common import json_option
from opssecrets.errors import BadInput, EnvironmentProblem, NoIdentity
from opssecrets.keys import generate_identity, plugin_of_identity, recipient_for_identity
from opssecrets.sopsconfig import check_name

PRIVATE_WARNING = (
    "warning: this is your private age identity; anyone who sees it can read every secret you can. "
    "Do not paste it into a chat, a ticket or a shell history."
)


def _warn_if_terminal() -> None:
    if sys.stdout.isatty():
        click.echo(PRIVATE_WARNING, err=True)


def _shadowed_note() -> None:
    """Tell the user when their own variables take precedence over the keyring."""
    set_vars = [var for var in ident.USER_IDENTITY_VARS if os.environ.get(var)]
    if set_vars:
        names = ", ".join(set_vars)
        click.echo(
            f"note: {names} is set in your environment and takes precedence over the keyring; unset it to use this identity",
            err=True,
        )


def _refuse_if_stored(wanted: str | None = None) -> bool:
    """Refuse to overwrite a different keyring identity; True when ``wanted`` is already there."""
    current = ident.keyring_identity()
    if current is None:
        return False
    if wanted is not None and current == wanted:
        return True
    raise BadInput(
        f"the keyring already holds an identity ({ident.describe_identity(current)}); "
        "run 'opssecrets identity forget' first (after 'identity export' if you still need it)"
    )


def _admin_command(name: str, recipient: str) -> str:
    return f"opssecrets add-engineer {name} --age-key {recipient}"


@click.group("identity")
def identity() -> None:
    """Your age identity: kept in the OS keyring, handed to sops only through its environment."""


@identity.command("new")
@click.option("--name", help="Your name as the ops repository will know you (default: your login name).")
@click.option(
    "--to-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the identity to this new file (mode 0600) instead of the keyring (for a machine without one).",
)
@click.option(
    "--stdout",
    "to_stdout",
    is_flag=True,
    help="Print the identity to stdout instead of storing it (for a machine without a keyring).",
)
def new(name: str | None, to_file: Path | None, to_stdout: bool) -> int:
    """Generate an age identity, keep it in the OS keyring, print the command to send an admin."""
    who = check_name(name, 'name') if name is not None else ident.default_name()
    if to_file is not None and to_stdout:
        raise BadInput("give at most one of --to-file FILE and --stdout")
    if to_file is None and not to_stdout:
        info = ident.keyring_info()
        if not info.usable:
            raise EnvironmentProblem(
                f"cannot keep an identity in the OS keyring: {info.reason} ({info.backend}); "
                f"rerun with --to-file {ident.sops_default_key_file()} (written with mode 0600, where sops looks) or --stdout"
            )
        _refuse_if_stored()
    secret = generate_identity()
    recipient = recipient_for_identity(secret)
    if to_file is not None:
        ident.write_private_file(to_file, ident.keys_txt(secret))
        click.echo(f"Wrote your identity to {to_file} (mode 0600).", err=True)
        if to_file.expanduser().resolve() != ident.sops_default_key_file().resolve():
            click.echo(
                f"sops reads it when SOPS_AGE_KEY_FILE={to_file.expanduser().resolve()} is set (add that to your shell profile).",
                err=True,
            )
        out_err = False
    elif to_stdout:
        _warn_if_terminal()
        click.echo(ident.keys_txt(secret), nl=False)
        out_err = True  # stdout holds the identity; the rest goes to stderr
    else:
        backend = ident.store_in_keyring(secret)
        click.echo(f"Stored your new identity in the OS keyring ({backend}, service {ident.KEYRING_SERVICE}).", err=True)
        _shadowed_note()
        out_err = False
    click.echo(f"Your age recipient (public, safe to share): {recipient}", err=out_err)
    click.echo("Send this command to an admin of the ops repository:", err=out_err)
    click.echo("", err=out_err)
    click.echo(f"  {_admin_command(who, recipient)}", err=out_err)
    return 0


@identity.command("import")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A keys.txt (comments allowed) or an OpenSSH ed25519 private key (passphrase: asked at a terminal, or $SSH_TO_AGE_PASSPHRASE).",
)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the identity (or the OpenSSH key) from standard input.")
def import_(from_file: Path | None, from_stdin: bool) -> int:
    """Move an existing age identity (or SSH ed25519 key, converted like ssh-to-age) into the keyring."""
    if (from_file is None) == (not from_stdin):
        raise BadInput(f"give exactly one of --from-file FILE (e.g. {ident.sops_default_key_file()}) or --stdin")
    if from_file is not None:
        try:
            data = from_file.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {from_file}: {exc.strerror}") from exc
        source = str(from_file)
    elif sys.stdin.isatty():
        data = click.prompt("Paste the age identity (AGE-SECRET-KEY-1...)", hide_input=True).encode()
        source = "the pasted text"
    else:
        data = sys.stdin.buffer.read()
        source = "standard input"
    is_ssh_key = b"-----BEGIN OPENSSH PRIVATE KEY-----" in data
    secret = ident.identity_from_text(data, source)
    described = ident.describe_identity(secret)
    # stdout gets the recipient; a plugin identity's recipient is known only to its plugin
    recipient = None if plugin_of_identity(secret) else recipient_for_identity(secret)
    info = ident.keyring_info()
    if not info.usable:
        file_var = ident.SSH_KEY_VAR if is_ssh_key else "SOPS_AGE_KEY_FILE"
        hint = (
            f"set {file_var}={from_file.resolve()} so opssecrets and sops read it"
            if from_file is not None
            else "keep it in a file (mode 0600) and set SOPS_AGE_KEY_FILE"
        )
        raise EnvironmentProblem(f"cannot keep an identity in the OS keyring: {info.reason} ({info.backend}); {hint}")
    if _refuse_if_stored(secret):
        click.echo(f"That identity is already in the keyring ({described}); nothing changed.", err=True)
        _print_recipient(recipient, described)
        return 0
    backend = ident.store_in_keyring(secret)
    click.echo(f"Stored the identity in the OS keyring ({backend}, service {ident.KEYRING_SERVICE}).", err=True)
    if from_file is not None and not is_ssh_key:  # an SSH key stays: it is also the user's SSH login
        click.echo(
            f"{from_file} still holds it in plaintext: once 'opssecrets doctor' shows your files decrypt, "
            f"delete it (shred -u {from_file}).",
            err=True,
        )
    _shadowed_note()
    _print_recipient(recipient, described)
    return 0


def _print_recipient(recipient: str | None, described: str) -> None:
    if recipient is not None:
        click.echo(recipient)
    else:
        click.echo(f"Stored {described}: its age1... recipient comes from the plugin itself.", err=True)


@identity.command("show")
@json_option(help="Print the source and recipients as JSON.")
def show(as_json: bool) -> int:
    """Print the recipient (age1..., public) of the identity sops would use, and where it comes from."""
    resolved = ident.resolve_identity()
    if as_json:
        from opssecrets.output import emit_json

        emit_json(
            {"source": resolved.source, "where": resolved.where, "recipients": list(resolved.recipients), "note": resolved.note}
        )
        return 0 if resolved.found else NoIdentity.exit_code
    if not resolved.found:
        raise NoIdentity(
            f"no identity: none of {', '.join(ident.USER_IDENTITY_VARS)} is set, the OS keyring holds none, "
            f"and {ident.sops_default_key_file()} does not exist; run 'opssecrets identity new --name NAME'"
        )
    for recipient in resolved.recipients:
        click.echo(recipient)
    click.echo(f"(from {resolved.where})", err=True)
    if not resolved.recipients:
        click.echo("(no X25519 identity readable there to show a recipient for)", err=True)
    if resolved.note:
        click.echo(f"note: {resolved.note}", err=True)
    return 0


@identity.command("export")
def export() -> int:
    """Print the keyring identity (keys.txt format) to stdout, e.g. to move it to another machine."""
    secret = ident.keyring_identity()
    if secret is None:
        raise NoIdentity("the OS keyring holds no opssecrets identity; run 'opssecrets identity new' or 'identity import'")
    _warn_if_terminal()
    click.echo(ident.keys_txt(secret), nl=False)
    return 0


@identity.command("forget")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(yes: bool) -> int:
    """Delete the identity from the OS keyring (export it first if you still need it)."""
    secret = ident.keyring_identity()
    if secret is None:
        click.echo("The OS keyring holds no opssecrets identity; nothing to forget.", err=True)
        return 0
    recipient = ident.describe_identity(secret)
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("'identity forget' deletes your private key: confirm with --yes when not at a terminal")
        click.confirm(
            f"Delete the identity ({recipient}) from the keyring? Without a copy you lose access to your secrets", abort=True
        )
    ident.forget_keyring_identity()
    click.echo(f"Deleted the identity ({recipient}) from the OS keyring.", err=True)
    return 0

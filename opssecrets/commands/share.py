"""``opssecrets share KEY --to NAME [--file FILE]``: one value, age-encrypted, armored on stdout."""

from __future__ import annotations

import sys

import click

from opssecrets.commands.common import file_option, pass_repo_context
from opssecrets.repo import RepoContext


@click.command("share")
@click.argument("key")
@click.option("--to", "to", required=True, help="A recipient name from .sops.yaml, or an age1... recipient.")
@file_option
@click.option(
    "--outside-rule",
    is_flag=True,
    help="Hand it to someone the file's rule does not include; recorded in the ledger as exposed to them.",
)
@pass_repo_context
def share(context: RepoContext, key: str, to: str, file: str | None, outside_rule: bool) -> int:
    """Hand one secret's current value to one person: encrypted with age to them, armored on stdout.

    KEY is named as sops-nix names it (slack/bot_token). Send the output instead of
    pasting the value into a chat; they read it with 'age -d -i THEIR_KEYS_FILE'.
    """
    repo = context.repo()
    from opssecrets.share import share_secret

    shared = share_secret(repo, key, to, file, outside_rule=outside_rule)
    sys.stdout.buffer.write(shared.armored)
    sys.stdout.flush()
    click.echo(
        f"Encrypted {shared.key} from {shared.file} to {shared.label} ({shared.recipient}). "
        "They read it with: opssecrets identity export | age -d -i - SAVED_FILE (or age -d -i KEYS_FILE SAVED_FILE).",
        err=True,
    )
    if shared.outside_rule:
        click.echo(
            f"{shared.label} is outside the rule for {shared.file}: recorded in the ledger as exposed to them; "
            f"rotate {shared.key} when the hand-over is done ('opssecrets rotate {shared.key} --file {shared.file}').",
            err=True,
        )
    return 0

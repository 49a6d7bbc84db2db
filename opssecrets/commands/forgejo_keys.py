"""Asking at the terminal which Forgejo key to add (the click side of ``opssecrets.forgejo``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from opssecrets.forgejo import FORGEJO_URL_VAR, choose_forgejo_key, keys_url, policy_forgejo_url, resolve_forgejo_url
from opssecrets.keys import SshPublicKey


def click_prompt(question: str, choices: list[str]) -> int:
    """``opssecrets.forgejo.Prompt`` at the terminal: confirm one key, or pick one of several (-1: none)."""
    click.echo(question, err=True)
    if len(choices) == 1:
        click.echo(f"  {choices[0]}", err=True)
        return 0 if click.confirm("Add this key?", default=False, err=True) else -1
    for number, choice in enumerate(choices, start=1):
        click.echo(f"  {number}) {choice}", err=True)
    picked: int = click.prompt("Which one? (number; 0 for none)", type=click.IntRange(0, len(choices)), err=True)
    return picked - 1


def key_from_forgejo(url_option: str | None, user: str, *, yes: bool, root: Path | None) -> SshPublicKey:
    """The SSH ed25519 key of Forgejo ``user`` to add, shown with its fingerprint and confirmed.

    The URL: ``url_option``, else ``$OPSSECRETS_FORGEJO_URL``, else the policy of the repository at ``root``.
    """
    url = resolve_forgejo_url(url_option, None if url_option or os.environ.get(FORGEJO_URL_VAR) else policy_forgejo_url(root))
    click.echo(f"Fetching {user}'s SSH keys from {keys_url(url, user)}", err=True)
    key = choose_forgejo_key(url, user, yes=yes, prompt=click_prompt)
    click.echo(f"Using {user}'s key {key.fingerprint} from {url}.", err=True)
    return key

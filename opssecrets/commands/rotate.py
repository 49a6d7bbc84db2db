"""``rotate``, ``verify`` and ``status``: thin click wiring over ``opssecrets.rotation`` and ``opssecrets.status``."""

from __future__ import annotations

import sys

import click

from opssecrets.commands.common import file_option, json_option, pass_repo_context
from opssecrets.errors import BadInput, Findings
from opssecrets.ledger import RotationLedger
from opssecrets.paths import LEDGER_PATH
from opssecrets.policy import Policy, load_policy
from opssecrets.repo import Repo, RepoContext
from opssecrets.rotation import (
    Target,
    VerifyOptions,
    current_value,
    generate_value,
    resolve_target,
    rotate_secret,
    strip_one_newline,
    verify_current,
)
from opssecrets.status import STATES, StatusRow, status_rows

EXIT_CODES = (
    "Exit codes: 0 done; 1 (verify) the service refused the current value, (status --strict) something is "
    "overdue or exposed; 2 bad input (unknown key, wrong format, empty value, value refused by the service, "
    "no terminal for the prompt); 3 environment (service unreachable, no identity can decrypt the file, sops missing); "
    "4 sops failed; 130 interrupted (Ctrl-C). On any failure no file is changed."
)


def _announce(message: str) -> None:
    click.echo(f"opssecrets: {message}", err=True)


def _verify_options(slack_api_url: str | None, homeserver: str | None) -> VerifyOptions:
    return VerifyOptions(slack_api_url=slack_api_url, homeserver=homeserver, announce=_announce)


slack_api_option = click.option(
    "--slack-api-url",
    metavar="URL",
    default=None,
    help="Slack Web API base URL (default: $OPSSECRETS_SLACK_API_URL, else https://slack.com/api).",
)
homeserver_option = click.option(
    "--homeserver",
    metavar="URL",
    default=None,
    help="Matrix homeserver base URL (default: $OPSSECRETS_HOMESERVER, else the policy's).",
)


def _read_stdin() -> str:
    stream = sys.stdin
    if stream is None or stream.closed:
        raise BadInput(
            "--stdin was given but stdin is closed: pipe the value in (printf '%s' \"$TOKEN\" | ...); nothing was changed"
        )
    not_utf8 = BadInput(
        "--stdin: the value is not UTF-8 text (a binary file or another encoding was piped in); "
        "pipe the token as UTF-8 text; nothing was changed"
    )
    try:
        text = stream.read()
        # stdin decodes with surrogateescape: bytes that are not UTF-8 arrive as lone surrogates
        text.encode("utf-8")
    except UnicodeError:
        raise not_utf8 from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"--stdin: could not read stdin ({exc.__class__.__name__}); nothing was changed") from None
    if text == "":
        raise BadInput("--stdin: stdin was empty (closed without a value); nothing was changed")
    return strip_one_newline(text)


def _prompt(target: Target) -> str:
    stream = sys.stdin
    if stream is None or stream.closed or not stream.isatty():
        raise BadInput(
            "no terminal to prompt on (stdin is not a terminal): pipe the value with --stdin"
            + (" or use --generate" if target.kind.can_generate else "")
            + "; nothing was changed"
        )
    if target.kind.obtain:
        click.echo(f"{target.key} ({target.kind.name}): {target.kind.obtain}", err=True)
    value = click.prompt(f"New value for {target.key} (input hidden)", hide_input=True, default="", show_default=False, err=True)
    return str(value)


@click.command("rotate", epilog=EXIT_CODES)
@click.argument("key")
@file_option
@click.option("--generate", "generate", is_flag=True, help="Generate the value here (kinds that allow it).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from stdin (one trailing newline is stripped).")
@click.option("--reason", metavar="TEXT", default=None, help="Why, recorded in the ledger (e.g. 'offboarding alice').")
@click.option("--no-verify", "no_verify", is_flag=True, help="Do not check the value with the service before writing it.")
@slack_api_option
@homeserver_option
@pass_repo_context
def rotate(
    context: RepoContext,
    key: str,
    file: str | None,
    generate: bool,
    from_stdin: bool,
    reason: str | None,
    no_verify: bool,
    slack_api_url: str | None,
    homeserver: str | None,
) -> int:
    """Put a new value for KEY (nested keys with '/', as sops-nix names them) and record it.

    The value comes from a hidden prompt, from stdin with --stdin, or is generated with
    --generate; never from an argument. It is checked against the kind's format, verified
    with the service where the policy says how, written with sops through stdin (atomically:
    a failure leaves the file byte-identical), recorded in the ledger, and followed by the
    kind's next steps.
    """
    if generate and from_stdin:
        raise BadInput("--generate and --stdin both give the value: use one")
    repo = context.repo()
    policy = load_policy(repo.root)
    target = resolve_target(repo, policy, key, file)
    # Decrypting the current value first proves an identity here can open the file before
    # anyone pastes a token; the value itself only serves the "same as before" check.
    old_value = current_value(repo, target)
    if generate:
        value = generate_value(target.kind)
    elif from_stdin:
        value = _read_stdin()
    else:
        value = _prompt(target)
    outcome = rotate_secret(
        repo,
        policy,
        target,
        value,
        reason=reason,
        verify=not no_verify,
        options=_verify_options(slack_api_url, homeserver),
        old_value=old_value,
    )
    del value
    out = click.echo
    by = f" by {outcome.by}" if outcome.by else ""
    out(f"Rotated {target.key} in {target.relpath} (kind {target.kind.name}){by}.")
    if outcome.verified is not None:
        out(f"Verified: {outcome.verified.service}: {outcome.verified.detail}")
    else:
        out(f"Not verified: {outcome.verify_skipped}.")
    if outcome.data_key_reasons:
        out(f"The data key of {target.relpath} was replaced first ({'; '.join(outcome.data_key_reasons)}).")
    out(f"Recorded in {LEDGER_PATH}.")
    from opssecrets.restarts import declarations_of, repository_declarations, restart_steps

    units, nothing_restarts = restart_steps(
        declarations_of(repository_declarations(repo.root), target.key, target.relpath), target.kind.services
    )
    steps = list(outcome.steps)
    steps[min(1, len(steps)) : min(1, len(steps))] = units  # right after "Deploy the new secret"
    if nothing_restarts is not None:
        click.echo(f"opssecrets: warning: {nothing_restarts}", err=True)
    if steps:
        out("")
        out("Next steps:")
        for number, step in enumerate(steps, start=1):
            out(f"  {number}. {step}")
    return 0


@click.command("verify", epilog=EXIT_CODES)
@click.argument("key")
@file_option
@slack_api_option
@homeserver_option
@pass_repo_context
def verify(context: RepoContext, key: str, file: str | None, slack_api_url: str | None, homeserver: str | None) -> int:
    """Check the current value of KEY with its service, without changing anything.

    Decrypts it with your identity; Slack tokens are checked with auth.test or
    apps.connections.open, the Matrix registration token with the homeserver's validity
    endpoint (after the deploy).
    """
    repo = context.repo()
    policy = load_policy(repo.root)
    target = resolve_target(repo, policy, key, file)
    result = verify_current(repo, target, _verify_options(slack_api_url, homeserver))
    click.echo(f"ok: {target.key} in {target.relpath}: {result.service}: {result.detail}")
    return 0


def _notify(repo: Repo, policy: Policy, rows: list[StatusRow], *, always: bool, homeserver: str | None) -> None:
    from opssecrets import notify

    room = notify.settings(policy).room  # a missing [notify] table fails even on a quiet day
    notice = notify.compose(rows, repo.root.name)
    if not notice.needs_action and not always:
        click.echo("Nothing exposed, overdue or due: nothing posted (--notify-always posts anyway).", err=True)
        return
    notify.post(repo, policy, notice, homeserver=homeserver)
    click.echo(f"Posted the summary to {room}.", err=True)


@click.command("status", epilog=EXIT_CODES)
@json_option(help='Print {"secrets": [...]} for scripts.')
@click.option("--strict", is_flag=True, help="Exit 1 when any secret is overdue or exposed (for CI).")
@click.option(
    "--notify",
    is_flag=True,
    help="Post a summary of what is exposed, overdue or due to the policy's [notify] Matrix room; nothing when all is well.",
)
@click.option("--notify-always", is_flag=True, help="Like --notify, and post even when all is well (a heartbeat).")
@homeserver_option
@pass_repo_context
def status(context: RepoContext, as_json: bool, strict: bool, notify: bool, notify_always: bool, homeserver: str | None) -> int:
    """Every key of every encrypted file: kind, last rotation, age, max age and state.

    States, worst first: exposed (a removed reader could read it, as the ledger or the last
    'opssecrets exposure' audit of git history says; rotate it), overdue (older
    than its max age), due (within 14 days of it), unknown (never rotated through opssecrets;
    age from the file's sops lastmodified), ok. Reads no values and needs no identity, except
    --notify, which decrypts the bot's access token (the [notify] table's token_key) to post.
    """
    from opssecrets.output import emit_json, render_table

    repo = context.repo()
    policy = load_policy(repo.root)
    rows = status_rows(repo, policy, RotationLedger.load(repo.root))
    if as_json:
        emit_json({"secrets": [row.to_json() for row in rows]})
    else:
        table = [
            {
                "state": row.state.upper() if row.state in ("exposed", "overdue") else row.state,
                "file": row.file,
                "key": row.key,
                "kind": row.kind,
                "rotated": row.rotated_at[:10] if row.rotated_at else "never",
                "age": (f"{row.age_days}d" + ("*" if row.rotated_at is None else "")) if row.age_days is not None else "?",
                "max": f"{row.max_age_days}d" if row.max_age_days else "-",
                "note": row.note,
            }
            for row in rows
        ]
        click.echo(render_table(table, ["state", "file", "key", "kind", "rotated", "age", "max", "note"]))
        counts = {state: sum(1 for row in rows if row.state == state) for state in STATES}
        summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        click.echo(
            f"{len(rows)} secrets: {summary or 'none'}" + ("  (* age from sops lastmodified)" if counts["unknown"] else ""),
            err=True,
        )
    if notify or notify_always:
        _notify(repo, policy, rows, always=notify_always, homeserver=homeserver)
    bad = [row for row in rows if row.state in ("overdue", "exposed")]
    if strict and bad:
        raise Findings(f"{len(bad)} secret(s) overdue or exposed: rotate them with 'opssecrets rotate KEY --file FILE'")
    return 0

"""``status --notify``: what needs re-issuing, posted to the team's Matrix room.

The room and the bot come from the policy's ``[notify]`` table; the bot's access token is read
with sops from the platform's default secrets file into memory, used in one request header, and
dropped. The message names files, keys and states, never a value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from opssecrets.errors import BadInput, EnvironmentProblem
from opssecrets.policy import Notify, Policy
from opssecrets.repo import Repo
from opssecrets.status import StatusRow
from opssecrets.verify.http import Rejected, Unreachable
from opssecrets.verify.matrix import MatrixClient, homeserver_url

NOTIFY_STATES = ("exposed", "overdue", "due")  # what someone has to act on
MAX_LISTED = 15  # a chat message, not a report: the rest is one `opssecrets status` away
NO_NOTIFY_TABLE = (
    'no [notify] table in the repository\'s policies/*.toml: add one with room = "!ROOM:SERVER" and '
    'token_key = "KEY" (the key holding the bot\'s access token in the default secrets file)'
)


@dataclass(frozen=True)
class Notice:
    text: str
    needs_action: bool


def compose(rows: Sequence[StatusRow], repository: str) -> Notice:
    """The message for ``rows`` (worst first, as ``status_rows`` returns them)."""
    pending = [row for row in rows if row.state in NOTIFY_STATES]
    if not pending:
        return Notice(f"opssecrets status for {repository}: nothing exposed, overdue or due among {len(rows)} secret(s).", False)
    tally = Counter(row.state for row in pending)
    counts = ", ".join(f"{tally[state]} {state}" for state in NOTIFY_STATES if tally[state])
    lines = [f"opssecrets status for {repository}: {counts}."]
    for row in pending[:MAX_LISTED]:
        age = f", {row.age_days} of {row.max_age_days} days" if row.max_age_days is not None and row.age_days is not None else ""
        lines.append(f"- {row.state}: {row.key} in {row.file}{age}")
    if len(pending) > MAX_LISTED:
        lines.append(f"- and {len(pending) - MAX_LISTED} more")
    lines.append("Run 'opssecrets status' in the ops repository; 'opssecrets rotate KEY' re-issues one.")
    return Notice("\n".join(lines), True)


def settings(policy: Policy) -> Notify:
    """The policy's ``[notify]`` table, or a ``BadInput`` that says how to write one."""
    if policy.notify is None:
        raise BadInput(NO_NOTIFY_TABLE)
    return policy.notify


def post(repo: Repo, policy: Policy, notice: Notice, *, homeserver: str | None = None) -> str:
    """Post ``notice`` to the policy's room; returns the event id."""
    target = settings(policy)
    secrets_file = policy.platform.default_file
    try:
        url = homeserver_url(homeserver, policy.platform.homeserver)
    except Unreachable as exc:
        raise BadInput(exc.message) from None
    token = repo.sops.extract(secrets_file, target.token_key).decode("utf-8", "replace").strip()
    if not token:
        raise BadInput(f"{target.token_key} in {secrets_file} is empty: store the bot's access token there")
    try:
        return MatrixClient(url).send_notice(target.room, token, notice.text)
    except (Rejected, Unreachable) as exc:
        raise EnvironmentProblem(f"{exc.message}; nothing was posted ({target.token_key} in {secrets_file} is the bot's token)") from None

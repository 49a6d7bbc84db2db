"""An engineer's SSH ed25519 key from their Forgejo (or GitHub) profile: ``{url}/{user}.keys``.

Forgejo, Gitea and GitHub serve a user's public keys as plain text, one per line, at
``{url}/{user}.keys``. Only ``ssh-ed25519`` keys can become age recipients (ssh-to-age),
so other types are listed in messages but never offered.

Library code: the caller passes the function that asks the user (the command uses click).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, EnvironmentProblem, OpsError
from opssecrets.keys import SshPublicKey, parse_ssh_public_key

FORGEJO_URL_VAR = "OPSSECRETS_FORGEJO_URL"
TIMEOUT = 15.0
MAX_BYTES = 1 << 20
_USER = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

# prompt(question, choices) -> the index of the chosen entry, or -1 to decline. With one
# choice it is a yes/no confirmation of that key; with several, a pick.
Prompt = Callable[[str, list[str]], int]


class KeyDeclined(OpsError):
    """The user declined the offered key(s); nothing was changed (exit 2)."""


@dataclass(frozen=True)
class ForgejoKeys:
    url: str
    user: str
    ed25519: tuple[SshPublicKey, ...]
    other_types: tuple[str, ...]


def resolve_forgejo_url(option: str | None, policy_url: str | None = None) -> str:
    """The Forgejo base URL: the option, then ``$OPSSECRETS_FORGEJO_URL``, then the repository's policy."""
    for candidate in (option, os.environ.get(FORGEJO_URL_VAR), policy_url):
        if candidate and candidate.strip():
            return check_url(candidate.strip())
    raise BadInput(f"no Forgejo URL: pass --forgejo-url https://git.example.org or set {FORGEJO_URL_VAR}")


def policy_forgejo_url(root: Path | None) -> str | None:
    """``[platform] forgejo_url`` from the policy (shipped default, overridden by the repo's ``policies/``)."""
    from opssecrets.policy import load_policy

    return load_policy(root).platform.forgejo_url or None


def check_url(url: str) -> str:
    """The Forgejo base URL, if keys may be fetched from it: https (plain http only to this machine)."""
    from opssecrets.verify.http import require_https

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadInput(f"{url!r} is not an http(s) URL; pass the Forgejo base URL, e.g. https://git.clarun.xyz")
    # over plain http anyone on the way could hand back their own key to enrol
    require_https(url, "the Forgejo URL")
    if parsed.username or parsed.password:
        raise BadInput("the Forgejo URL must not carry credentials; user keys are public")
    if parsed.query or parsed.fragment:
        raise BadInput(f"{url!r}: give the Forgejo base URL without a query or fragment")
    return url.rstrip("/")


def keys_url(url: str, user: str) -> str:
    if not _USER.match(user) or user in (".", ".."):
        raise BadInput(f"{user!r} is not a Forgejo user name; check --forgejo-user")
    return f"{check_url(url)}/{urllib.parse.quote(user)}.keys"


def fetch_keys(url: str, user: str, *, timeout: float = TIMEOUT) -> ForgejoKeys:
    """Fetch and sort ``{url}/{user}.keys``: ed25519 keys parsed, other key types named."""
    from opssecrets.verify.http import open_no_redirect

    target = keys_url(url, user)
    request = urllib.request.Request(target, headers={"Accept": "text/plain", "User-Agent": "opssecrets"})  # noqa: S310 - http(s) only
    try:
        with open_no_redirect(request, timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise EnvironmentProblem(f"{target} answered with a redirect (HTTP {exc.code}); give the final https URL instead") from exc
        if exc.code == 404:
            raise BadInput(f"{target} says there is no user {user!r} (HTTP 404); check --forgejo-user and the URL") from exc
        raise EnvironmentProblem(f"{target} answered HTTP {exc.code}; try again later or pass the key with --ssh-key") from exc
    except urllib.error.URLError as exc:
        raise EnvironmentProblem(f"cannot reach {target} ({exc.reason}); check --forgejo-url or {FORGEJO_URL_VAR}") from exc
    except (TimeoutError, OSError) as exc:
        raise EnvironmentProblem(
            f"cannot reach {target} ({exc.__class__.__name__}); check --forgejo-url or {FORGEJO_URL_VAR}"
        ) from exc
    if len(body) > MAX_BYTES:
        raise EnvironmentProblem(f"{target} sent more than {MAX_BYTES} bytes; that is not a key list")
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        raise EnvironmentProblem(f"{target} sent a web page, not a key list; check --forgejo-url (the base URL of Forgejo)")
    ed25519: list[SshPublicKey] = []
    seen: set[bytes] = set()
    others: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_type = line.split()[0]
        if key_type != "ssh-ed25519":
            others.append(key_type)
            continue
        try:
            key = parse_ssh_public_key(line)
        except BadInput:
            others.append("a damaged ssh-ed25519 line")
            continue
        if key.blob not in seen:
            seen.add(key.blob)
            ed25519.append(key)
    return ForgejoKeys(check_url(url), user, tuple(ed25519), tuple(others))


def describe_key(key: SshPublicKey) -> str:
    """One line a person can compare with ``ssh-keygen -lf``: type, fingerprint, comment, age recipient."""
    comment = f" {key.comment}" if key.comment else ""
    return f"ssh-ed25519 {key.fingerprint}{comment} (age recipient {key.age_recipient})"


def choose_forgejo_key(url: str, user: str, *, yes: bool, prompt: Prompt) -> SshPublicKey:
    """The one ed25519 key of ``user`` on Forgejo the caller should add, confirmed by the user.

    Raises BadInput when the user has no ed25519 key, or several and ``yes`` cannot pick;
    KeyDeclined when the user says no.
    """
    found = fetch_keys(url, user)
    where = keys_url(url, user)
    if not found.ed25519:
        listed = (
            f" (it lists {len(found.other_types)} other key(s): {', '.join(sorted(set(found.other_types)))})"
            if found.other_types
            else ""
        )
        raise BadInput(
            f"{user} has no ssh-ed25519 key at {where}{listed}; ask them to add one "
            "('ssh-keygen -t ed25519', then Settings > SSH keys), or pass --age-key/--ssh-key"
        )
    choices = [describe_key(key) for key in found.ed25519]
    if len(found.ed25519) == 1:
        if yes:
            return found.ed25519[0]
        answer = prompt(f"{user}'s SSH key on {found.url}:", choices)
        if answer != 0:
            raise KeyDeclined("key not accepted; nothing was changed")
        return found.ed25519[0]
    if yes:
        raise BadInput(
            f"{user} has {len(found.ed25519)} ssh-ed25519 keys at {where}; --yes cannot choose: "
            "run without --yes to pick one, or pass --ssh-key"
        )
    answer = prompt(f"{user} has {len(found.ed25519)} ssh-ed25519 keys on {found.url}; which one is theirs for secrets?", choices)
    if not 0 <= answer < len(found.ed25519):
        raise KeyDeclined("no key chosen; nothing was changed")
    return found.ed25519[answer]

"""The Matrix parts against a real homeserver: Synapse (PyPI matrix-synapse) started by the tests
on 127.0.0.1 with SQLite, installed on first use (tests/synapse_support.py).

``verify matrix-registration-token`` asks Synapse's registration-token validity endpoint (the
one conduwuit implements too) about tokens made through Synapse's admin API; ``status --notify``
posts to a room as a bot user whose access token sits in the secrets file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OpsRepo
from rotation_support import Platform, make_platform
from synapse_support import Homeserver, running_synapse

from opssecrets.ledger import RotationLedger, mark_exposed

pytestmark = pytest.mark.slow
SECRETS = "secrets/secrets.yaml"


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    with running_synapse(tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture
def bot(synapse: Homeserver) -> tuple[str, str]:
    """A notification bot (not an admin) in a fresh room: (access token, room id)."""
    import secrets

    name = "notify" + secrets.token_hex(4)
    token = synapse.register(name, admin=False)
    room = synapse.new_room()
    assert synapse.call("POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": f"@{name}:localhost"})[0] == 200
    status, reply = Homeserver(synapse.url, synapse.shared_secret, token).call("POST", f"/_matrix/client/v3/join/{room}", {})
    assert status == 200, reply
    return token, room


def _platform(repo: OpsRepo, synapse: Homeserver, extra: dict[str, str] | None = None) -> Platform:
    platform = make_platform(repo, {"matrix-registration-token": synapse.new_registration_token(), **(extra or {})}, commit=False)
    repo.write("policies/platform.toml", f'[platform]\nhomeserver = "{synapse.url}"\n')
    return platform


def _notify_policy(repo: OpsRepo, room: str, token_key: str = "matrix-bot-access-token") -> None:
    repo.write("policies/notify.toml", f'[notify]\nroom = "{room}"\ntoken_key = "{token_key}"\n')


def _ago(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=days, hours=1)


# --- verify ------------------------------------------------------------------------------------


def test_verify_asks_the_real_homeserver_and_tells_valid_from_revoked(repo: OpsRepo, synapse: Homeserver) -> None:
    platform = _platform(repo, synapse)
    ok = repo.ops("verify", "matrix-registration-token")
    assert ok.code == 0, ok
    assert f"valid on {synapse.url}" in ok.out

    token = platform.tokens["matrix-registration-token"]
    synapse.delete_registration_token(token)  # an admin revoked it on the server
    refused = repo.ops("verify", "matrix-registration-token")
    assert refused.code == 1, refused
    assert "does not accept this registration token" in refused.err
    assert token not in refused.out + refused.err


def test_a_rotated_token_verifies_only_once_the_homeserver_has_it(repo: OpsRepo, synapse: Homeserver) -> None:
    """The runbook's order: rotate (the homeserver learns the token only at the deploy), deploy,
    verify. Here the deploy is Synapse's admin API creating that same token."""
    platform = _platform(repo, synapse)
    done = repo.ops("rotate", "matrix-registration-token", "--generate")
    assert done.code == 0, done
    fresh = platform.value("matrix-registration-token")
    assert fresh != platform.tokens["matrix-registration-token"] and fresh not in done.out + done.err

    before_deploy = repo.ops("verify", "matrix-registration-token")
    assert before_deploy.code == 1, before_deploy

    status, reply = synapse.call("POST", "/_synapse/admin/v1/registration_tokens/new", {"token": fresh})
    assert status == 200, reply
    after_deploy = repo.ops("verify", "matrix-registration-token")
    assert after_deploy.code == 0, after_deploy
    assert fresh not in after_deploy.out + after_deploy.err


# --- status --notify ---------------------------------------------------------------------------


def test_notify_posts_what_needs_reissuing_to_the_room_without_values(repo: OpsRepo, synapse: Homeserver, bot: tuple[str, str]) -> None:
    token, room = bot
    platform = _platform(repo, synapse, {"matrix-bot-access-token": token})
    _notify_policy(repo, room)
    ledger = RotationLedger.load(repo.root)
    ledger.record_rotation(SECRETS, "matrix-registration-token", when=_ago(100), by="dan", reason="test")  # max 90
    ledger.save()
    mark_exposed(repo.root, SECRETS, ["slack-app-token"], "alice", operator="dan")

    result = repo.ops_proc("status", "--notify")
    assert result.code == 0, result
    assert f"Posted the summary to {room}." in result.err
    [message] = synapse.messages(room)
    assert message["sender"].startswith("@notify") and message["content"]["msgtype"] == "m.notice"
    body = message["content"]["body"]
    assert body.splitlines()[0] == f"opssecrets status for {repo.root.name}: 1 exposed, 1 overdue."
    assert f"- exposed: slack-app-token in {SECRETS}" in body
    assert f"- overdue: matrix-registration-token in {SECRETS}, 100 of 90 days" in body
    for value in platform.tokens.values():
        assert value not in body and value not in result.out + result.err

    strict = repo.ops_proc("status", "--notify", "--strict")
    assert strict.code == 1  # posted, and still a failure for CI
    assert len(synapse.messages(room)) == 2


def test_notify_stays_quiet_when_all_is_well_unless_asked(repo: OpsRepo, synapse: Homeserver, bot: tuple[str, str]) -> None:
    token, room = bot
    _platform(repo, synapse, {"matrix-bot-access-token": token})
    _notify_policy(repo, room)
    quiet = repo.ops("status", "--notify")
    assert quiet.code == 0, quiet
    assert "nothing posted" in quiet.err
    assert synapse.messages(room) == []

    heartbeat = repo.ops("status", "--notify-always")
    assert heartbeat.code == 0, heartbeat
    [message] = synapse.messages(room)
    assert "nothing exposed, overdue or due among 5 secret(s)" in message["content"]["body"]


def test_notify_with_a_dead_bot_token_is_an_environment_error_that_never_shows_it(
    repo: OpsRepo, synapse: Homeserver, bot: tuple[str, str]
) -> None:
    token, room = bot
    _platform(repo, synapse, {"matrix-bot-access-token": token})
    _notify_policy(repo, room)
    mark_exposed(repo.root, SECRETS, ["slack-bot-token"], "alice", operator="dan")
    assert Homeserver(synapse.url, synapse.shared_secret, token).call("POST", "/_matrix/client/v3/logout", {})[0] == 200
    result = repo.ops("status", "--notify")
    assert result.code == 3, result
    assert "does not accept the bot's access token (M_UNKNOWN_TOKEN)" in result.err
    assert "nothing was posted" in result.err and "matrix-bot-access-token" in result.err
    assert token not in result.out + result.err
    assert synapse.messages(room) == []


def test_notify_to_a_room_the_bot_is_not_in_says_to_invite_it(repo: OpsRepo, synapse: Homeserver, bot: tuple[str, str]) -> None:
    token, _ = bot
    _platform(repo, synapse, {"matrix-bot-access-token": token})
    other_room = synapse.new_room()
    _notify_policy(repo, other_room)
    mark_exposed(repo.root, SECRETS, ["slack-bot-token"], "alice", operator="dan")
    result = repo.ops("status", "--notify")
    assert result.code == 3, result
    assert "invite the bot to the room" in result.err


def test_notify_needs_a_notify_table_even_on_a_quiet_day(repo: OpsRepo, synapse: Homeserver) -> None:
    _platform(repo, synapse)
    result = repo.ops("status", "--notify")
    assert result.code == 2, result
    assert "no [notify] table" in result.err and "token_key" in result.err


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('room = "#ops:clarun.xyz"\ntoken_key = "k"\n', "must be a room id"),
        ('room = "!abc:clarun.xyz"\n', "needs token_key"),
        ('room = "!abc:clarun.xyz"\ntoken_key = "k"\nchannel = "x"\n', "unknown field"),
    ],
)
def test_a_bad_notify_table_names_the_file_and_the_fix(repo: OpsRepo, table: str, problem: str) -> None:
    make_platform(repo, commit=False)
    repo.write("policies/notify.toml", "[notify]\n" + table)
    result = repo.ops("status", "--json")
    assert result.code == 2, result
    assert problem in result.err and "policies/notify.toml" in result.err
    assert not (repo.root / ".opssecrets").exists()

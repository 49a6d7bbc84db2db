"""`opssecrets verify`: the current value checked with the live API (a loopback stand-in)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import OpsRepo
from guard_support import slack_bot
from rotation_support import FakeService, Platform, closed_port_url, fake_server, make_platform

from opssecrets.errors import BadInput
from opssecrets.verify.http import Rejected, Unreachable
from opssecrets.verify.matrix import MatrixClient
from opssecrets.verify.slack import SlackClient, slack_api_url

VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


@pytest.fixture
def platform(repo: OpsRepo) -> Platform:
    return make_platform(repo)


@pytest.fixture
def service() -> Iterator[FakeService]:
    with fake_server() as server:
        yield server


def test_verify_bot_token_ok_and_refused(platform: Platform, service: FakeService) -> None:
    api = service.url + "/api"
    before = platform.repo.snapshot()
    r = platform.repo.ops("verify", "slack-bot-token", "--slack-api-url", api)
    assert r.code == 1, r  # the stand-in does not know the token yet: a finding
    assert "Slack auth.test refused the token: invalid_auth" in r.err
    service.valid.add(platform.tokens["slack-bot-token"])
    r = platform.repo.ops("verify", "slack-bot-token", "--slack-api-url", api)
    assert r.code == 0, r
    assert "ok: slack-bot-token in secrets/secrets.yaml: Slack auth.test: workspace chochacho" in r.out
    assert service.requests[-1]["auth"] == "Bearer " + platform.tokens["slack-bot-token"]
    assert platform.tokens["slack-bot-token"] not in r.out + r.err
    assert platform.repo.snapshot() == before  # verify never changes anything


def test_verify_app_token(platform: Platform, service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", service.url + "/api")
    service.valid.add(platform.tokens["slack-app-token"])
    r = platform.repo.ops("verify", "slack-app-token")
    assert r.code == 0, r
    assert service.requests[0]["path"] == "/api/apps.connections.open"


def test_verify_slack_unreachable(platform: Platform) -> None:
    r = platform.repo.ops("verify", "slack-bot-token", "--slack-api-url", closed_port_url())
    assert r.code == 3 and "could not be reached" in r.err


def test_verify_matrix_registration_token_after_deploy(platform: Platform, service: FakeService) -> None:
    r = platform.repo.ops("verify", "matrix-registration-token", "--homeserver", service.url)
    assert r.code == 1, r  # not deployed yet: the homeserver does not know it
    assert "does not accept this registration token" in r.err
    token = platform.tokens["matrix-registration-token"]
    service.valid.add(token)
    r = platform.repo.ops("verify", "matrix-registration-token", "--homeserver", service.url + "/")
    assert r.code == 0, r
    assert f"valid on {service.url}" in r.out
    assert service.requests[-1] == {"method": "GET", "path": VALIDITY, "query": {"token": [token]}}
    assert token not in r.out + r.err


def test_verify_homeserver_from_environment(platform: Platform, service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_HOMESERVER", service.url)
    service.valid.add(platform.tokens["matrix-registration-token"])
    assert platform.repo.ops("verify", "matrix-registration-token").code == 0


def test_verify_homeserver_from_repository_policy(platform: Platform, service: FakeService) -> None:
    platform.repo.write("policies/kinds.toml", f'[platform]\nhomeserver = "{service.url}"\n')
    service.valid.add(platform.tokens["matrix-registration-token"])
    assert platform.repo.ops("verify", "matrix-registration-token").code == 0


def test_verify_generic_key_has_nothing_to_check(platform: Platform) -> None:
    r = platform.repo.ops("verify", "acme-email")
    assert r.code == 2 and "no verification" in r.err


def test_verify_unknown_key(platform: Platform) -> None:
    r = platform.repo.ops("verify", "nope")
    assert r.code == 2 and "no key 'nope'" in r.err


# --- the clients themselves --------------------------------------------------------------------


def test_slack_api_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSSECRETS_SLACK_API_URL", raising=False)
    assert slack_api_url(None) == "https://slack.com/api"
    monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", "http://127.0.0.1:9/api/")
    assert slack_api_url(None) == "http://127.0.0.1:9/api"
    assert slack_api_url("http://127.0.0.1:8/x") == "http://127.0.0.1:8/x"


def test_slack_error_field_is_scrubbed_of_the_token(service: FakeService) -> None:
    """A reply echoing the token back must not carry it into our message."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            body = json.dumps({"ok": False, "error": f"bad token {token}\nsecond line"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    token = slack_bot()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(Rejected) as caught:
            SlackClient(f"http://127.0.0.1:{server.server_address[1]}").auth_test(token)
    finally:
        server.shutdown()
        server.server_close()
    assert token not in caught.value.message
    assert "[redacted]" in caught.value.message and "\n" not in caught.value.message


def test_non_json_reply_is_unreachable_not_a_crash(service: FakeService) -> None:
    with pytest.raises(Unreachable) as caught:
        MatrixClient(service.url + "/nowhere").registration_token_valid("abcdefghijklmnop")
    assert "HTTP 404" in caught.value.message
    with pytest.raises(BadInput, match="is not https"):  # refused before connecting: exit 2
        SlackClient("ftp://example.invalid").auth_test("x")


def test_redirects_are_not_followed_so_the_token_stays_put(service: FakeService) -> None:
    """urllib would resend the Authorization header to wherever a redirect points."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    target = service.url + "/api/auth.test"

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(Unreachable) as caught:
            SlackClient(f"http://127.0.0.1:{server.server_address[1]}/api").auth_test(slack_bot())
    finally:
        server.shutdown()
        server.server_close()
    assert "redirect (HTTP 307)" in caught.value.message
    assert service.requests == []  # the token never reached the redirect's target


def test_printed_next_steps_run_as_printed(platform: Platform, service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands in rotate's next steps (from the policy) are real: run them as printed."""
    import os
    import shlex
    import subprocess

    monkeypatch.setenv("OPSSECRETS_HOMESERVER", service.url)
    r = platform.repo.ops("rotate", "matrix-registration-token", "--generate")
    assert r.code == 0, r
    steps = [line.split(". ", 1)[1] for line in r.out.splitlines() if line.startswith("  ") and ". " in line]
    verify_step = next(step for step in steps if "opssecrets verify" in step)
    read_step = next(step for step in steps if "sops decrypt --extract" in step)
    new = platform.value("matrix-registration-token")
    # before the deploy the homeserver does not know the token; after it, it does
    args = shlex.split(verify_step.split(": ", 1)[1])
    assert args[0] == "opssecrets"
    assert platform.repo.ops(*args[1:]).code == 1
    service.valid.add(new)
    assert platform.repo.ops(*args[1:]).code == 0
    command = shlex.split(read_step.split(": ", 1)[1])
    env = dict(os.environ) | {"SOPS_AGE_KEY": platform.repo.operator.identity, "SOPS_DISABLE_VERSION_CHECK": "1"}
    proc = subprocess.run(command, cwd=platform.root, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0 and proc.stdout == new

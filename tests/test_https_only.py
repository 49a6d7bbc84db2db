"""A value or an enrolment request goes out only over https (plain http only to this machine),
to a host printed first; anything else is exit 2 before any connection.

The refused cases point at a real server listening on this machine's non-loopback address,
so a request that got out would be seen there."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import OpsRepo
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from guard_support import slack_bot
from rotation_support import fake_server, make_platform, serving


def lan_address() -> str:
    """This machine's address on its outward interface (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        address = str(sock.getsockname()[0])
    assert not address.startswith("127."), "the test needs a non-loopback interface"
    return address


@dataclass
class Recorder:
    url: str = ""
    pages: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)


@contextmanager
def lan_server() -> Iterator[Recorder]:
    """A real HTTP server on every interface; ``url`` names it by the non-loopback address."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            recorder.asked.append(self.path)
            path = self.path.split("?", 1)[0]
            body = recorder.pages.get(path, json.dumps({"valid": True, "ok": True})).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

    with serving(ThreadingHTTPServer(("0.0.0.0", 0), Handler)) as server:  # reachable off loopback: the point
        recorder.url = f"http://{lan_address()}:{server.server_address[1]}"
        yield recorder


def commit_policy(repo: OpsRepo, text: str) -> None:
    repo.write("policies/kinds.toml", text)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "policy")


def test_verify_refuses_a_plain_http_homeserver_from_a_committed_policy(repo: OpsRepo) -> None:
    make_platform(repo)
    with lan_server() as lan:
        commit_policy(repo, f'[platform]\nhomeserver = "{lan.url}"\n')
        before = repo.snapshot()
        result = repo.ops("verify", "matrix-registration-token")
        assert result.code == 2, result
        assert "is not https" in result.err and len(result.err.strip().splitlines()) == 1
        assert lan.asked == []  # refused before connecting: the token never left
    assert repo.snapshot() == before


def test_verify_over_loopback_http_prints_the_host_first(repo: OpsRepo) -> None:
    platform = make_platform(repo)
    with fake_server() as service:
        service.valid.add(platform.tokens["matrix-registration-token"])
        result = repo.ops("verify", "matrix-registration-token", "--homeserver", service.url)
        assert result.code == 0, result
        assert f"sending the matrix-registration-token value to {service.url} to verify it" in result.err
        assert len(service.requests) == 1


def test_slack_api_url_must_be_https_off_this_machine(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    make_platform(repo)
    with lan_server() as lan:
        monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", lan.url + "/api")
        result = repo.ops("verify", "slack-bot-token")
        assert result.code == 2 and "is not https" in result.err, result
        rotated = repo.ops("rotate", "slack-bot-token", "--stdin", stdin=slack_bot() + "\n")
        assert rotated.code == 2 and "is not https" in rotated.err, rotated
        assert lan.asked == []


def ed25519_line(comment: str) -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {comment}"


def test_add_engineer_refuses_a_plain_http_forgejo_url_from_a_changed_policy(repo: OpsRepo) -> None:
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.org\n")
    with lan_server() as lan:
        lan.pages["/alice.keys"] = ed25519_line("mallory@elsewhere") + "\n"
        commit_policy(repo, f'[platform]\nforgejo_url = "{lan.url}"\n')
        before = repo.snapshot()
        result = repo.ops_proc("add-engineer", "alice", "--forgejo-user", "alice", "--admin", "--yes")
        assert result.code == 2, result
        assert "is not https" in result.err and "Forgejo URL" in result.err
        assert lan.asked == []
    assert repo.snapshot() == before


def test_forgejo_on_loopback_is_allowed_and_the_host_is_printed_before_the_request(repo: OpsRepo) -> None:
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    with fake_server() as service:
        result = repo.ops("add-engineer", "alice", "--forgejo-user", "alice", "--forgejo-url", service.url, "--yes")
        # the stand-in has no such page: what matters is where it asked, and that it said so first
        assert result.code == 2, result
        lines = result.err.splitlines()
        assert lines[0] == f"Fetching alice's SSH keys from {service.url}/alice.keys", result
        assert [r["path"] for r in service.requests] == ["/alice.keys"]

"""Engineer keys from ``{url}/{user}.keys``, served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from opssecrets.errors import BadInput, EnvironmentProblem
from opssecrets.forgejo import FORGEJO_URL_VAR, KeyDeclined, choose_forgejo_key, fetch_keys, resolve_forgejo_url
from opssecrets.keys import parse_ssh_public_key


@dataclass
class KeyServer:
    """Serves ``pages[path] = (status, body)``; records the paths asked for."""

    url: str
    pages: dict[str, tuple[int, str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[KeyServer]:
    state = KeyServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.asked.append(self.path)
            status, body = state.pages.get(self.path, (404, "Not found.\n"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def ed25519_line(comment: str) -> str:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{public} {comment}"


def rsa_line() -> str:
    key = generate_private_key(public_exponent=65537, key_size=1024)
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


class Answers:
    """The caller's prompt function: records what it was shown, answers from a script."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.shown: list[tuple[str, list[str]]] = []

    def __call__(self, question: str, choices: list[str]) -> int:
        self.shown.append((question, choices))
        return self.answers.pop(0)


def test_one_ed25519_key_is_shown_with_fingerprint_and_confirmed(server: KeyServer) -> None:
    line = ed25519_line("alice@laptop")
    server.pages["/alice.keys"] = (200, f"{rsa_line()}\n{line}\n")
    prompt = Answers(0)
    key = choose_forgejo_key(server.url, "alice", yes=False, prompt=prompt)
    expected = parse_ssh_public_key(line)
    assert key.age_recipient == expected.age_recipient
    (question, choices), *_ = prompt.shown
    assert "alice" in question
    assert choices == [f"ssh-ed25519 {expected.fingerprint} alice@laptop (age recipient {expected.age_recipient})"]
    assert server.asked == ["/alice.keys"]


def test_fingerprint_matches_ssh_keygen(server: KeyServer, tmp_path: Path) -> None:
    line = ed25519_line("bob@desk")
    pub = tmp_path / "k.pub"
    pub.write_text(line + "\n")
    shown = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]
    server.pages["/bob.keys"] = (200, line + "\n")
    assert choose_forgejo_key(server.url, "bob", yes=True, prompt=Answers()).fingerprint == shown


def test_declining_the_key_raises(server: KeyServer) -> None:
    server.pages["/alice.keys"] = (200, ed25519_line("a") + "\n")
    with pytest.raises(KeyDeclined):
        choose_forgejo_key(server.url, "alice", yes=False, prompt=Answers(-1))


def test_yes_takes_the_only_key_without_asking(server: KeyServer) -> None:
    line = ed25519_line("a")
    server.pages["/alice.keys"] = (200, line + "\n")
    prompt = Answers()
    assert choose_forgejo_key(server.url + "/", "alice", yes=True, prompt=prompt).blob == parse_ssh_public_key(line).blob
    assert prompt.shown == []


def test_several_ed25519_keys_ask_which(server: KeyServer) -> None:
    first, second = ed25519_line("laptop"), ed25519_line("desktop")
    server.pages["/carol.keys"] = (200, f"{first}\n{second}\n{first}\n")  # a duplicate is offered once
    prompt = Answers(1)
    key = choose_forgejo_key(server.url, "carol", yes=False, prompt=prompt)
    assert key.blob == parse_ssh_public_key(second).blob
    assert len(prompt.shown[0][1]) == 2
    with pytest.raises(KeyDeclined):
        choose_forgejo_key(server.url, "carol", yes=False, prompt=Answers(-1))


def test_several_keys_with_yes_is_an_error(server: KeyServer) -> None:
    server.pages["/carol.keys"] = (200, f"{ed25519_line('a')}\n{ed25519_line('b')}\n")
    with pytest.raises(BadInput, match="--yes cannot choose"):
        choose_forgejo_key(server.url, "carol", yes=True, prompt=Answers())


def test_no_ed25519_key_is_a_clear_error(server: KeyServer) -> None:
    server.pages["/dave.keys"] = (200, rsa_line() + "\n")
    with pytest.raises(BadInput) as caught:
        choose_forgejo_key(server.url, "dave", yes=True, prompt=Answers())
    assert "no ssh-ed25519 key" in caught.value.message and "ssh-rsa" in caught.value.message
    server.pages["/erin.keys"] = (200, "")
    with pytest.raises(BadInput, match="no ssh-ed25519 key"):
        choose_forgejo_key(server.url, "erin", yes=True, prompt=Answers())


def test_unknown_user_server_error_and_unreachable(server: KeyServer) -> None:
    with pytest.raises(BadInput, match="HTTP 404"):
        fetch_keys(server.url, "nobody")
    server.pages["/alice.keys"] = (500, "oops")
    with pytest.raises(EnvironmentProblem, match="HTTP 500"):
        fetch_keys(server.url, "alice")
    server.pages["/web.keys"] = (200, "<!DOCTYPE html><html></html>")
    with pytest.raises(EnvironmentProblem, match="web page"):
        fetch_keys(server.url, "web")
    with pytest.raises(EnvironmentProblem, match="cannot reach"):
        fetch_keys("http://127.0.0.1:9", "alice", timeout=5)


def test_user_and_url_are_checked_before_any_request(server: KeyServer) -> None:
    for user in ("../admin", "a/b", "", "x?y"):
        with pytest.raises(BadInput):
            fetch_keys(server.url, user)
    for url in ("ftp://host", "file:///etc", "https://u:p@host", "git.example.org"):
        with pytest.raises(BadInput):
            fetch_keys(url, "alice")
    assert server.asked == []


def test_url_comes_from_option_then_environment_then_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORGEJO_URL_VAR, raising=False)
    assert resolve_forgejo_url(None, "https://policy.example") == "https://policy.example"
    monkeypatch.setenv(FORGEJO_URL_VAR, "https://env.example/")
    assert resolve_forgejo_url(None, "https://policy.example") == "https://env.example"
    assert resolve_forgejo_url("https://option.example", "https://policy.example") == "https://option.example"
    monkeypatch.delenv(FORGEJO_URL_VAR)
    with pytest.raises(BadInput, match="--forgejo-url"):
        resolve_forgejo_url(None, None)

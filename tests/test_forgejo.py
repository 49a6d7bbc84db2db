"""Engineer keys from ``{url}/{user}.keys``, served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import AgeKey, OpsRepo
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from opssecrets.errors import BadInput, EnvironmentProblem
from opssecrets.forgejo import (
    FORGEJO_URL_VAR,
    KeyDeclined,
    choose_forgejo_key,
    fetch_keys,
    policy_forgejo_url,
    resolve_forgejo_url,
)
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


def test_policy_names_the_platform_forgejo_and_a_repository_can_override_it(tmp_path: Path) -> None:
    assert policy_forgejo_url(None) == "https://git.clarun.xyz"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "platform.toml").write_text('[platform]\nforgejo_url = "https://forge.example.org"\n')
    assert policy_forgejo_url(tmp_path) == "https://forge.example.org"


# --- add-engineer --forgejo-user, end to end: the Forgejo key becomes a recipient sops-nix-style


def ssh_keypair(comment: str) -> tuple[bytes, str]:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {comment}"


@pytest.fixture
def admin_repo(repo: OpsRepo) -> OpsRepo:
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.org\n")
    return repo


def reads_with_ssh_key(repo: OpsRepo, private: bytes) -> bool:
    from opssecrets.identity import identity_from_openssh
    from opssecrets.keys import recipient_for_identity

    identity = identity_from_openssh(private, "test key")
    holder = AgeKey(identity, recipient_for_identity(identity))
    return repo.decrypt("secrets/secrets.yaml", identity=holder).returncode == 0


def test_add_engineer_from_forgejo_with_yes(admin_repo: OpsRepo, server: KeyServer) -> None:
    private, public = ssh_keypair("alice@laptop")
    server.pages["/alice.keys"] = (200, f"{rsa_line()}\n{public}\n")
    result = admin_repo.ops_proc("add-engineer", "alice", "--forgejo-user", "alice", "--forgejo-url", server.url, "--admin", "--yes")
    assert result.code == 0, result
    assert parse_ssh_public_key(public).fingerprint in result.err
    assert parse_ssh_public_key(public).age_recipient in (admin_repo.root / ".sops.yaml").read_text()
    assert reads_with_ssh_key(admin_repo, private)


def test_add_engineer_from_forgejo_asks_and_takes_the_url_from_the_environment(admin_repo: OpsRepo, server: KeyServer) -> None:
    private, public = ssh_keypair("alice@laptop")
    server.pages["/alice.keys"] = (200, public + "\n")
    env = {FORGEJO_URL_VAR: server.url}
    before = admin_repo.snapshot()
    declined = admin_repo.ops_proc("add-engineer", "alice", "--forgejo-user", "alice", "--admin", stdin="n\n", env=env)
    assert declined.code == 2, declined
    assert "nothing was changed" in declined.err
    assert admin_repo.snapshot() == before
    accepted = admin_repo.ops_proc("add-engineer", "alice", "--forgejo-user", "alice", "--admin", stdin="y\n", env=env)
    assert accepted.code == 0, accepted
    assert parse_ssh_public_key(public).fingerprint in accepted.err and "Add this key?" in accepted.err
    assert reads_with_ssh_key(admin_repo, private)


def test_add_engineer_from_forgejo_picks_one_of_several(admin_repo: OpsRepo, server: KeyServer) -> None:
    _, laptop = ssh_keypair("laptop")
    private, desktop = ssh_keypair("desktop")
    server.pages["/carol.keys"] = (200, f"{laptop}\n{desktop}\n")
    args = ("add-engineer", "carol", "--forgejo-user", "carol", "--forgejo-url", server.url, "--admin")
    refused = admin_repo.ops_proc(*args, "--yes")
    assert refused.code == 2 and "--yes cannot choose" in refused.err
    picked = admin_repo.ops_proc(*args, stdin="2\n")
    assert picked.code == 0, picked
    assert "1) ssh-ed25519" in picked.err and "2) ssh-ed25519" in picked.err
    assert reads_with_ssh_key(admin_repo, private)
    assert parse_ssh_public_key(laptop).age_recipient not in (admin_repo.root / ".sops.yaml").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--forgejo-user", "nobody", "--forgejo-url", "SERVER", "--yes"), "HTTP 404"),
        (("--forgejo-user", "rsa-only", "--forgejo-url", "SERVER", "--yes"), "no ssh-ed25519 key"),
        (("--forgejo-user", "alice", "--age-key", "age1x"), "give one of --age-key, --ssh-key or --forgejo-user"),
        (("--forgejo-url", "https://x.example", "--age-key", "age1x"), "go with --forgejo-user"),
        (("--forgejo-user", "alice", "--forgejo-url", "ftp://SERVER"), "not an http(s) URL"),
    ],
)
def test_add_engineer_from_forgejo_bad_input_changes_nothing(
    admin_repo: OpsRepo, server: KeyServer, extra: tuple[str, ...], message: str
) -> None:
    server.pages["/rsa-only.keys"] = (200, rsa_line() + "\n")
    args = [arg.replace("SERVER", server.url) if arg == "SERVER" else arg for arg in extra]
    before = admin_repo.snapshot()
    result = admin_repo.ops("add-engineer", "eve", "--admin", *args)
    assert result.code == 2, result
    # one error line (after the line naming where the keys are fetched from, when it got that far)
    assert message in result.err and len([line for line in result.err.splitlines() if not line.startswith("Fetching ")]) == 1
    assert admin_repo.snapshot() == before


def test_a_small_order_key_on_a_forgejo_profile_is_never_added(admin_repo: OpsRepo, server: KeyServer) -> None:
    """Forgejo keys are untrusted input: a forged ssh-ed25519 line whose point is the curve's
    identity converts to the all-zero age recipient, readable by nobody and a trap for sops."""
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", bytes([1]) + bytes(31)))
    server.pages["/mallory.keys"] = (200, "ssh-ed25519 " + base64.b64encode(blob).decode() + " mallory\n")
    before = admin_repo.snapshot()
    result = admin_repo.ops("add-engineer", "mallory", "--forgejo-user", "mallory", "--forgejo-url", server.url, "--yes")
    assert result.code == 2, result
    assert "no ssh-ed25519 key" in result.err and "damaged" in result.err
    assert admin_repo.snapshot() == before

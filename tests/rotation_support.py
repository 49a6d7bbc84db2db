"""Test support for rotation: real HTTP servers on 127.0.0.1 standing in for Slack and a
Matrix homeserver, a platform-like repository, and a pty runner.

Slack tokens come from tests/guard_support.py (made at run time, so no committed file holds
anything that looks like a real one); the CLI runs through tests/conftest.py ``cli_argv``.
"""

from __future__ import annotations

import json
import os
import pty
import secrets
import select
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from guard_support import slack_app, slack_bot

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def registration_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class FakeService:
    """What the stand-in server accepts, and what it saw."""

    valid: set[str] = field(default_factory=set)
    team: str = "chochacho"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    status_override: int | None = None
    # runbook mode: Slack accepts any well-formed token it has not revoked, and the homeserver
    # accepts the registration token last "deployed" (written by the nixos-rebuild stand-in)
    accept_any: bool = False
    revoked: set[str] = field(default_factory=set)
    deployed_file: Path | None = None

    def knows(self, token: str, *, homeserver: bool = False) -> bool:
        if token in self.revoked:
            return False
        if token in self.valid:
            return True
        if homeserver:
            return self.deployed_file is not None and self.deployed_file.exists() and self.deployed_file.read_text() == token
        return self.accept_any and len(token) > 20


class _Handler(BaseHTTPRequestHandler):
    service: FakeService

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        self.service.requests.append({"method": "POST", "path": self.path, "auth": auth})
        if self.service.status_override:
            self._reply(self.service.status_override, {"error": "server exploded"})
            return
        if self.path.endswith("/auth.test"):
            if not token.startswith("xoxb-"):
                self._reply(200, {"ok": False, "error": "not_allowed_token_type" if token else "not_authed"})
            elif self.service.knows(token):
                self._reply(200, {"ok": True, "team": self.service.team, "team_id": "T0001", "user": "bridgebot", "bot_id": "B01"})
            else:
                self._reply(200, {"ok": False, "error": "invalid_auth"})
        elif self.path.endswith("/apps.connections.open"):
            if not token.startswith("xapp-"):
                self._reply(200, {"ok": False, "error": "not_allowed_token_type"})
            elif self.service.knows(token):
                self._reply(200, {"ok": True, "url": "wss://wss-primary.example.invalid/link/?ticket=1"})
            else:
                self._reply(200, {"ok": False, "error": "invalid_auth"})
        else:
            self._reply(404, {"ok": False, "error": "unknown_method"})

    def do_PUT(self) -> None:
        """The homeserver's room-message endpoint (``status --notify``): records what was posted."""
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
        self.service.requests.append({"method": "PUT", "path": path, "auth": self.headers.get("Authorization", ""), "body": body})
        if "/_matrix/client/v3/rooms/" in path and "/send/m.room.message/" in path:
            self._reply(200, {"event_id": "$posted"})
        else:
            self._reply(404, {"errcode": "M_UNRECOGNIZED"})

    def do_GET(self) -> None:
        parsed = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        self.service.requests.append({"method": "GET", "path": parsed.path, "query": query})
        if parsed.path == "/_matrix/client/v1/register/m.login.registration_token/validity":
            token = (query.get("token") or [""])[0]
            self._reply(200, {"valid": self.service.knows(token, homeserver=True)})
        else:
            self._reply(404, {"errcode": "M_UNRECOGNIZED"})


@contextmanager
def fake_server(prefix: str = "") -> Iterator[FakeService]:
    """A real HTTP server on 127.0.0.1 in a thread; ``service.url`` is its base URL + prefix."""
    service = FakeService()
    handler = type("Handler", (_Handler,), {"service": service})
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as server:
        service.url = f"http://127.0.0.1:{server.server_address[1]}{prefix}"
        yield service


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """``server`` answering in a thread for the length of the block, then shut down."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


SOPS_YAML = """\
keys:
  - &admin_dan {dan}
  - &host_clarun {host}
creation_rules:
  - path_regex: ^secrets/[^/]+\\.(yaml|json|env|ini)$
    key_groups:
      - age:
          - *admin_dan
          - *host_clarun
"""


def platform_plaintext(tokens: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in tokens.items())


def run_in_pty(
    argv: list[str], env: dict[str, str], cwd: Path, *, answer: str | None = None, ctrl_c: bool = False, timeout: float = 60
) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal and stdin/stdout/stderr.

    When the hidden prompt appears, type ``answer`` (and Enter) or press Ctrl-C. Returns the
    exit code and everything the terminal showed (which proves what was, and was not, echoed).
    """
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is already its controlling terminal
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    shown = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal (it exited)
                    chunk = b""
                if not chunk:
                    _, status = os.waitpid(pid, 0)
                    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")
                shown += chunk
            if not answered and b"(input hidden)" in shown:
                time.sleep(0.2)  # let getpass switch echo off before we type
                if ctrl_c:
                    os.write(master, b"\x03")
                elif answer is not None:
                    os.write(master, answer.encode() + b"\r")
                answered = True
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"timed out; the terminal showed: {shown.decode('utf-8', 'replace')!r}")
    finally:
        os.close(master)


@dataclass
class Platform:
    """A repository shaped like ops-jrz1: an admin (the operator), a host, the three tokens."""

    repo: Any  # conftest.OpsRepo
    host: Any  # conftest.AgeKey
    tokens: dict[str, str]

    @property
    def root(self) -> Path:
        return self.repo.root

    def value(self, key: str, rel: str = "secrets/secrets.yaml") -> str:
        index = "".join(f'["{part}"]' for part in key.split("/"))
        proc = self.repo.sops("decrypt", "--extract", index, rel)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode()


def make_platform(repo: Any, extra: dict[str, str] | None = None, *, commit: bool = True) -> Platform:
    from conftest import AgeKey

    host = AgeKey.new()
    repo.write(".sops.yaml", SOPS_YAML.format(dan=repo.operator.recipient, host=host.recipient))
    tokens = {
        "slack-app-token": slack_app(),
        "slack-bot-token": slack_bot(),
        "matrix-registration-token": registration_token(),
        "acme-email": "admin@clarun.example",
        **(extra or {}),
    }
    repo.encrypt("secrets/secrets.yaml", platform_plaintext(tokens))
    if commit:
        repo.git("add", "-A")
        repo.git("commit", "-qm", "platform")
    return Platform(repo, host, tokens)

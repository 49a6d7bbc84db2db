"""A real Matrix homeserver for the tests: Synapse from PyPI, installed by the tests themselves
into ``.venv-synapse`` beside the project (CI has nothing else), started on 127.0.0.1 with
SQLite, a bot user registered through its shared-secret admin API.

Synapse's dependencies (Twisted and friends) stay out of the project's own venv: it runs as
its own process from its own venv, the way a homeserver runs beside the tool in real life.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SYNAPSE_VENV = PROJECT_ROOT / ".venv-synapse"
SYNAPSE_REQUIREMENT = "matrix-synapse>=1.100"
START_TIMEOUT = 240.0  # a loaded 2-core CI machine takes a while to import Twisted


def synapse_python() -> Path:
    """The interpreter of a venv holding Synapse, installed on first use."""
    python = SYNAPSE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import synapse.app.homeserver"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False, timeout=300).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(SYNAPSE_VENV)], check=True, timeout=300)
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", SYNAPSE_REQUIREMENT]
    proc = subprocess.run(install, capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, f"pip could not install {SYNAPSE_REQUIREMENT}: {proc.stderr[-2000:]}"
    return python


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(folder: Path, port: int, shared_secret: str) -> str:
    config = {
        "server_name": "localhost",
        "pid_file": str(folder / "homeserver.pid"),
        "listeners": [
            {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "resources": [{"names": ["client"]}]}
        ],
        "database": {"name": "sqlite3", "args": {"database": str(folder / "homeserver.db")}},
        "media_store_path": str(folder / "media"),
        "signing_key_path": str(folder / "signing.key"),
        "registration_shared_secret": shared_secret,
        "enable_registration": True,
        "registration_requires_token": True,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        # the tests ask often and fast; Synapse's defaults would answer 429
        "rc_message": {"per_second": 1000, "burst_count": 1000},
        "rc_registration": {"per_second": 1000, "burst_count": 1000},
        "rc_registration_token_validity": {"per_second": 1000, "burst_count": 1000},
        "rc_login": {"address": {"per_second": 1000, "burst_count": 1000}, "account": {"per_second": 1000, "burst_count": 1000}},
    }
    return json.dumps(config)  # JSON is YAML


@dataclass
class Homeserver:
    """A running Synapse; ``admin_token`` belongs to the registered admin bot ``@opsbot:localhost``."""

    url: str
    shared_secret: str
    admin_token: str = ""

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        """One client or admin API request, as the admin bot unless ``auth`` is false."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def register(self, username: str, *, admin: bool) -> str:
        """A user through the shared-secret registration admin API; returns its access token."""
        _, reply = self.call("GET", "/_synapse/admin/v1/register", auth=False)
        nonce = reply["nonce"]
        password = secrets.token_urlsafe(16)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]))
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac.hexdigest()}
        status, reply = self.call("POST", "/_synapse/admin/v1/register", body, auth=False)
        assert status == 200, reply
        return str(reply["access_token"])

    def new_registration_token(self) -> str:
        status, reply = self.call("POST", "/_synapse/admin/v1/registration_tokens/new", {"length": 24})
        assert status == 200, reply
        return str(reply["token"])

    def delete_registration_token(self, token: str) -> None:
        status, reply = self.call("DELETE", f"/_synapse/admin/v1/registration_tokens/{urllib.parse.quote(token)}")
        assert status == 200, reply

    def new_room(self) -> str:
        status, reply = self.call("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat", "name": "ops"})
        assert status == 200, reply
        return str(reply["room_id"])

    def messages(self, room: str) -> list[dict[str, Any]]:
        """The room's message events, newest first."""
        query = urllib.parse.urlencode({"dir": "b", "limit": 50})
        status, reply = self.call("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/messages?{query}")
        assert status == 200, reply
        return [event for event in reply["chunk"] if event.get("type") == "m.room.message"]


@contextmanager
def running_synapse(folder: Path) -> Iterator[Homeserver]:
    python = synapse_python()
    folder.mkdir(parents=True, exist_ok=True)
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    (folder / "signing.key").write_text(f"ed25519 a_test {seed}\n")
    port = _free_port()
    shared_secret = secrets.token_urlsafe(32)
    config = folder / "homeserver.yaml"
    config.write_text(_config(folder, port, shared_secret))
    log = (folder / "synapse.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.Popen(
        [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = Homeserver(f"http://127.0.0.1:{port}", shared_secret)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, "Synapse exited at start: " + (folder / "synapse.log").read_text()[-3000:]
            try:
                if server.call("GET", "/_matrix/client/versions", auth=False)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Synapse did not answer in time: " + (folder / "synapse.log").read_text()[-3000:]
            time.sleep(0.5)
        server.admin_token = server.register("opsbot", admin=True)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

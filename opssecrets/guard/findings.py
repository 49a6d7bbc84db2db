"""A finding, and how a secret may appear in one: never in part, at most as a keyed fingerprint.

A plain hash (or a prefix) of a value in a CI log lets anyone guess a human password
offline. The fingerprint printed with a finding is an HMAC-SHA256 under a key that never
leaves this machine (``fingerprint.key`` in the state folder, created 0600 on first use) or
``$OPSSECRETS_FINGERPRINT_KEY`` (a CI secret, so committed allowlist entries match there
too): stable across runs, useless for guessing without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

FINGERPRINT_KEY_ENV = "OPSSECRETS_FINGERPRINT_KEY"
FINGERPRINT_KEY_FILE = "fingerprint.key"
KEYED_PREFIX = "hmac-sha256:"
LEGACY_PREFIX = "sha256:"  # still accepted in an allowlist written before; never printed
FINGERPRINT_PATTERN = r"(?:hmac-sha256|sha256):[0-9a-f]{16}"


@dataclass(frozen=True)
class Finding:
    """One problem: ``path`` relative to the repository root, ``line`` 1-based or None."""

    path: str
    line: int | None
    rule: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "rule": self.rule, "message": self.message}

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.rule}: {self.message}"


def redact(secret: bytes | str) -> str:
    """What a message shows of a secret: nothing of it (not even its first characters)."""
    return "(value not shown)"


def fingerprint_key(state_dir: Path) -> bytes | None:
    """The fingerprint key: ``$OPSSECRETS_FINGERPRINT_KEY``, else ``state_dir/fingerprint.key``
    (32 random bytes, created 0600 on first use). None when it can be neither read nor made
    (a read-only checkout): findings then carry no fingerprint."""
    from_env = os.environ.get(FINGERPRINT_KEY_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = state_dir / FINGERPRINT_KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:  # another run made it first
        return _read_or_none(path)
    except OSError:
        return None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return _read_or_none(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        key = handle.read(4096).strip()
    if len(key) < 32:
        raise OSError(f"{path}: too short to be a key")
    return key


def _read_or_none(path: Path) -> bytes | None:
    try:
        return _read_key(path)
    except OSError:
        return None


def fingerprint(secret: bytes, key: bytes) -> str:
    """A stable name for a secret that does not help guess it: for the allowlist and repeat runs."""
    return KEYED_PREFIX + hmac.new(key, secret, hashlib.sha256).hexdigest()[:16]


def allowlisted(secret: bytes, allowed: frozenset[str], key: bytes | None) -> bool:
    """Whether the policy allowlists ``secret`` by its keyed fingerprint or a legacy plain one."""
    if not allowed:
        return False
    if key is not None and fingerprint(secret, key) in allowed:
        return True
    return LEGACY_PREFIX + hashlib.sha256(secret).hexdigest()[:16] in allowed


def fingerprint_note(secret: bytes, key: bytes | None) -> str:
    """`` (fingerprint hmac-sha256:...)`` for a message, or nothing without a key."""
    return f" (fingerprint {fingerprint(secret, key)})" if key is not None else ""

"""Keyed fingerprints of secret values: HMAC-SHA256 with a key that never leaves this machine.

A plain hash of a short token can be brute-forced or looked up, and it lets anyone with
the repository test a guess. A keyed one names "the same value" and "a different value"
to the person who holds the key, and nothing to anyone else. The key is 32 random bytes in
the repository's state folder (inside ``.git``, never committed), mode 0600, made on first
use. ``textconv`` uses it; the guard's fingerprints can share it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from opssecrets.errors import EnvironmentProblem

KEY_NAME = "fingerprint.key"
KEY_BYTES = 32
DIGEST_HEX = 16  # 64 bits: enough to tell values apart in a review, short enough to read


def fingerprint_key(state_dir: Path) -> bytes:
    """The local fingerprint key, created (0600) on first use."""
    path = state_dir / KEY_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read the fingerprint key {path} ({exc.strerror}); fix its permissions") from None
    if len(data) == KEY_BYTES:
        return data
    if data:
        raise EnvironmentProblem(f"{path} is not a {KEY_BYTES}-byte key; delete it and a new one is made")
    return _create(path)


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return fingerprint_key(path.parent)  # another process made it first: use theirs
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the fingerprint key {path} ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def keyed_fingerprint(key: bytes, value: bytes) -> str:
    """``hmac:`` and the first 16 hex digits of HMAC-SHA256(key, value)."""
    return "hmac:" + hmac.new(key, value, hashlib.sha256).hexdigest()[:DIGEST_HEX]

"""Keyed fingerprints of secret values: HMAC-SHA256 under a key that never leaves this machine.

A plain hash (or a prefix) of a value in a CI log or a diff lets anyone test guesses of a
human password offline. A keyed fingerprint says "the same value" or "a different value" to
whoever holds the key and nothing to anyone else. The key is ``$OPSSECRETS_FINGERPRINT_KEY``
(a CI secret, so committed allowlist entries match there too), else ``fingerprint.key`` in the
repository's state folder (inside ``.git``, never committed): 32 random bytes as hex, made 0600
on first use, opened without following a symlink. The guard's findings and ``textconv`` share it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from opssecrets import fsio
from opssecrets.paths import FINGERPRINT_KEY

KEY_ENV = "OPSSECRETS_FINGERPRINT_KEY"
PREFIX = "hmac-sha256:"
DIGEST_HEX = 16  # 64 bits: enough to tell values apart in a review, short enough to read
_MIN_KEY = 32


def fingerprint_key(state_dir: Path) -> bytes | None:
    """The key, created on first use; None when it can be neither read nor made (a read-only
    checkout): callers then show no fingerprint rather than a weaker one."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = state_dir / FINGERPRINT_KEY
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsio.create_private(path, (secrets.token_hex(_MIN_KEY) + "\n").encode("ascii"))
    except FileExistsError:  # another run made it first (or a symlink is there): use theirs
        return _read_or_none(path)
    except OSError:
        return None
    return _read_or_none(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        key = handle.read(4096).strip()
    if len(key) < _MIN_KEY:
        raise OSError(f"{path}: too short to be a key")
    return key


def _read_or_none(path: Path) -> bytes | None:
    try:
        return _read_key(path)
    except OSError:
        return None


def keyed_fingerprint(key: bytes, value: bytes) -> str:
    """``hmac-sha256:`` and the first 16 hex digits of HMAC-SHA256(key, value)."""
    return PREFIX + hmac.new(key, value, hashlib.sha256).hexdigest()[:DIGEST_HEX]

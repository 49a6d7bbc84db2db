"""A finding, and how a secret may appear in one: never in part, at most as a keyed fingerprint.

A plain hash (or a prefix) of a value in a CI log lets anyone guess a human password
offline. The fingerprint printed with a finding is an HMAC-SHA256 under a key that never
leaves this machine (``opssecrets/fingerprint.py``): stable across runs, useless for guessing
without the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from opssecrets.fingerprint import keyed_fingerprint

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


def fingerprint(secret: bytes, key: bytes) -> str:
    """A stable name for a secret that does not help guess it: for the allowlist and repeat runs."""
    return keyed_fingerprint(key, secret)


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

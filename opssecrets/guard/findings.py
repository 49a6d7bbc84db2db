"""A finding, and how a secret may appear in one: at most its first four characters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PREVIEW_CHARS = 4


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
    """The first (at most) four characters of a secret and an ellipsis; never more."""
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:PREVIEW_CHARS])
    return f"{shown}…" if len(text) > PREVIEW_CHARS else "…"


def fingerprint(secret: bytes) -> str:
    """A stable name for a secret that does not reveal it: for the policy allowlist."""
    return "sha256:" + hashlib.sha256(secret).hexdigest()[:16]

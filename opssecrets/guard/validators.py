"""Checks that tell a real secret from text that merely has its shape."""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter

from opssecrets.keys import IDENTITY_HRP, bech32_decode

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number: int, minwidth: int = 1) -> str:
    """Synapse's base62 (digits, upper, lower), zero-padded to ``minwidth``."""
    out = ""
    while number:
        number, rem = divmod(number, 62)
        out = _BASE62[rem] + out
    return "0" * (minwidth - len(out)) + out


def matrix_checksum_ok(token: bytes) -> bool:
    """Synapse tokens end in ``_`` + base62(CRC32(everything before it)), at least 6 wide."""
    body, sep, check = token.rpartition(b"_")
    if not sep:
        return False
    return base62(zlib.crc32(body), 6).encode("ascii") == check


def age_identity_ok(text: bytes) -> bool:
    decoded = bech32_decode(text.decode("ascii", "replace"))
    return decoded is not None and decoded[0] == IDENTITY_HRP and len(decoded[1]) == 32


_PEM_HEADER = re.compile(rb"[A-Za-z-]+:[^\n]*\n")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=\r\n\t ]*")


def pem_body_ok(data: bytes, end: int) -> bool:
    """A private key block has a real body: 64+ base64 characters after the BEGIN line.

    Documentation shows ``-----BEGIN ... PRIVATE KEY-----`` followed by ``...`` or nothing;
    that is not a key. Looks at most 4 KiB past the header, so a huge file stays linear.
    """
    window = data[end : end + 4096]
    if b"\\" in window[:8]:
        # a key in a JSON, TOML or HCL string: "-----BEGIN ...-----\\nMIIE...\\n"
        window = window.replace(b"\\\\", b"\\").replace(b"\\n", b"\n").replace(b"\\r", b"")
    window = window.lstrip(b"\r\n")
    while True:
        header = _PEM_HEADER.match(window)
        if header is None:
            break
        window = window[header.end() :]
    body = _BASE64_RUN.match(window)
    run = body.group(0) if body else b""
    return sum(1 for ch in run if ch not in b"\r\n\t ") >= 64


def shannon_entropy(text: bytes | str) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    total = len(text)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


_URL_WORD = re.compile(rb"[a-z]+[0-9]{0,3}|[A-Z]+[0-9]{0,3}|[0-9]+|\*+|x+|\.+")
_URL_TEMPLATE = re.compile(rb"[${}%<>*]")


def url_password_ok(secret: bytes) -> bool:
    """The password of ``scheme://user:password@host`` is a value, not a documented stand-in.

    ``user:password@``, ``user:pass123@``, ``:${DB_PASSWORD}@``, ``:%(pw)s@``, ``:****@``
    are documentation or templates; anything else of 6+ characters is a credential.
    """
    return len(secret) >= 6 and _URL_WORD.fullmatch(secret) is None and _URL_TEMPLATE.search(secret) is None

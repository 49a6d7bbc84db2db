"""age recipients and identities: bech32 encoding, validation, ssh-to-age conversion.

An age recipient is the bech32 (BIP-173, not bech32m) encoding of a 32-byte X25519
public key with the human-readable part ``age``; an identity is the same for the private
key with ``age-secret-key-``, upper-cased. SSH ed25519 keys convert the way ssh-to-age
does, so sops-nix, which decrypts with the converted host key, can read what we encrypt.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
PLUGIN_RECIPIENT_PREFIX = "age1"  # then the plugin name: age1yubikey1...
PLUGIN_IDENTITY_PREFIX = "age-plugin-"  # then the name and '-': AGE-PLUGIN-YUBIKEY-1...
_PLUGIN_NAME = re.compile(r"[a-z0-9+._-]+")  # what age accepts as a plugin name
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P  # the Edwards25519 curve constant
_L = 2**252 + 27742317777372353535851937790883648493  # the order of its prime subgroup
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None
    return out


def bech32_encode(hrp: str, payload: bytes) -> str:
    """Encode ``payload`` as bech32 with ``hrp`` (lower case; no length limit, as age does)."""
    data = _convert_bits(payload, 8, 5, pad=True)
    assert data is not None
    values = _hrp_expand(hrp) + data
    polymod = _polymod(values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def bech32_decode(text: str) -> tuple[str, bytes] | None:
    """Return ``(hrp, payload)`` if ``text`` is valid bech32 with a correct checksum, else None."""
    if text.lower() != text and text.upper() != text:
        return None
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        return None
    hrp, rest = text[:pos], text[pos + 1 :]
    if any(c not in _CHARSET for c in rest) or any(not 33 <= ord(c) <= 126 for c in hrp):
        return None
    data = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + data) != 1:
        return None
    payload = _convert_bits(data[:-6], 5, 8, pad=False)
    if payload is None:
        return None
    return hrp, bytes(payload)


def is_age_recipient(text: str) -> bool:
    decoded = bech32_decode(text)
    return decoded is not None and decoded[0] == RECIPIENT_HRP and len(decoded[1]) == 32 and text == text.lower()


def is_age_identity(text: str) -> bool:
    decoded = bech32_decode(text)
    return decoded is not None and decoded[0] == IDENTITY_HRP and len(decoded[1]) == 32


def check_age_recipient(text: str) -> str:
    """Return ``text`` stripped if it is a valid age recipient; raise BadInput naming the fault."""
    key = text.strip()
    if not key.startswith("age1"):
        if key.startswith("ssh-"):
            raise BadInput("that is an SSH key, not an age key: pass it with --ssh-key instead of --age-key")
        if key.upper().startswith("AGE-SECRET-KEY-"):
            raise BadInput("that is an age identity (a private key), never share it: pass the recipient from 'age-keygen -y'")
        raise BadInput(f"not an age recipient: {_preview(key)!r} does not start with 'age1'; pass the output of 'age-keygen -y'")
    if not is_age_recipient(key) and plugin_of_recipient(key) is None:
        if bech32_decode(key) is None:
            raise BadInput(
                f"not a valid age recipient: {_preview(key)!r} fails its bech32 checksum (a typo?); copy it again from 'age-keygen -y'"
            )
        raise BadInput(
            f"{_preview(key)!r} is neither an X25519 age recipient nor an age plugin recipient (age1NAME1..., lower case); copy it again"
        )
    decoded = bech32_decode(key)
    if is_age_recipient(key) and decoded is not None and is_low_order_x25519(decoded[1]):
        raise BadInput(
            f"{_preview(key)!r} is a low-order X25519 point, not anyone's public key (anything encrypted to it is readable "
            "by all or by none); pass the output of 'age-keygen -y'"
        )
    return key


def plugin_of_recipient(text: str) -> str | None:
    """The plugin of an ``age1NAME1...`` recipient with a valid checksum (``yubikey``), else None.

    age's plugin convention: the bech32 prefix is ``age1`` plus the plugin's name, and
    ``age-plugin-NAME`` on PATH does the work; the payload is the plugin's own business.
    """
    if text != text.lower():
        return None
    decoded = bech32_decode(text)
    if decoded is None or not decoded[0].startswith(PLUGIN_RECIPIENT_PREFIX):
        return None
    name = decoded[0][len(PLUGIN_RECIPIENT_PREFIX) :]
    return name if _PLUGIN_NAME.fullmatch(name) else None


def plugin_of_identity(text: str) -> str | None:
    """The plugin of an ``AGE-PLUGIN-NAME-1...`` identity with a valid checksum, else None."""
    decoded = bech32_decode(text.strip())
    if decoded is None or not decoded[0].startswith(PLUGIN_IDENTITY_PREFIX) or not decoded[0].endswith("-"):
        return None
    name = decoded[0][len(PLUGIN_IDENTITY_PREFIX) : -1]
    return name if _PLUGIN_NAME.fullmatch(name) else None


def is_low_order_x25519(public: bytes) -> bool:
    """Whether an X25519 public key is one of the small-order points (all-zero, 1, p-1, the
    order-8 points, or their non-canonical encodings): a shared secret with it is all zeros,
    which age refuses, so sops fails at encryption time, long after the key was accepted."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return True
    return False


def _preview(text: str) -> str:
    return text if len(text) <= 20 else text[:16] + "..."


def recipient_from_public_bytes(public: bytes) -> str:
    return bech32_encode(RECIPIENT_HRP, public)


def identity_from_private_bytes(private: bytes) -> str:
    return bech32_encode(IDENTITY_HRP, private).upper()


@dataclass(frozen=True)
class SshPublicKey:
    """An SSH ed25519 public key line, with the age recipient it converts to."""

    key_type: str
    blob: bytes
    comment: str

    @property
    def ed25519_point(self) -> bytes:
        return _ssh_string_fields(self.blob)[1]

    @property
    def age_recipient(self) -> str:
        return recipient_from_public_bytes(ed25519_public_to_x25519(self.ed25519_point))

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _ssh_string_fields(blob: bytes) -> list[bytes]:
    fields: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise BadInput("SSH key blob is truncated; copy the whole line from the .pub file")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise BadInput("SSH key blob is truncated; copy the whole line from the .pub file")
        fields.append(blob[offset : offset + length])
        offset += length
    return fields


_SSH_LINE = re.compile(r"^\s*(?P<type>[a-z0-9@.-]+)\s+(?P<blob>[A-Za-z0-9+/=]+)(?:\s+(?P<comment>.*))?$")


def parse_ssh_public_key(text: str) -> SshPublicKey:
    """Parse one ``ssh-ed25519 AAAA... comment`` line (or a path to a ``.pub`` file holding one)."""
    candidate = text.strip()
    if "\n" not in candidate and not candidate.startswith("ssh-") and not candidate.startswith("ecdsa-"):
        path = Path(candidate).expanduser()
        if path.is_file():
            candidate = path.read_text(encoding="utf-8", errors="replace").strip()
    lines = [line for line in candidate.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise BadInput("expected exactly one SSH public key line ('ssh-ed25519 AAAA...'); give one key or a .pub file")
    match = _SSH_LINE.match(lines[0])
    if match is None:
        if "PRIVATE KEY" in candidate:
            raise BadInput("that is an SSH private key: pass the public key (the .pub file) instead")
        raise BadInput("not an SSH public key line: expected 'ssh-ed25519 AAAA...'")
    key_type = match.group("type")
    if not key_type.startswith(("ssh-", "ecdsa-", "sk-")):
        raise BadInput("not an SSH public key line: expected 'ssh-ed25519 AAAA...' (or a .pub file)")
    if key_type != "ssh-ed25519":
        raise BadInput(
            f"{key_type} keys cannot become age recipients: sops-nix needs an ed25519 key "
            "(make one with 'ssh-keygen -t ed25519', or use the host's /etc/ssh/ssh_host_ed25519_key.pub)"
        )
    try:
        blob = base64.b64decode(match.group("blob"), validate=True)
    except ValueError as exc:
        raise BadInput("the SSH key's base64 part is damaged; copy the whole line again") from exc
    fields = _ssh_string_fields(blob)
    if len(fields) != 2 or fields[0] != b"ssh-ed25519" or len(fields[1]) != 32:
        raise BadInput("the SSH key line says ssh-ed25519 but its contents are not an ed25519 key")
    if not is_ed25519_public_key(fields[1]):
        # keys come from Forgejo profiles and pasted lines: untrusted input, and a bad point
        # converts to a low-order (or meaningless) age recipient
        raise BadInput("the SSH key is not a valid ed25519 public key (not a point of large order on the curve); copy it again")
    return SshPublicKey(key_type, blob, (match.group("comment") or "").strip())


def _edwards_decode(encoded: bytes) -> tuple[int, int] | None:
    """The affine point an ed25519 public key encodes (RFC 8032 5.1.3), None when it is none."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _edwards_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def _edwards_times(point: tuple[int, int], scalar: int) -> tuple[int, int]:
    result = (0, 1)
    while scalar:
        if scalar & 1:
            result = _edwards_add(result, point)
        point = _edwards_add(point, point)
        scalar >>= 1
    return result


def is_ed25519_public_key(encoded: bytes) -> bool:
    """Whether 32 bytes encode a point of the curve in its prime-order subgroup, as every
    real ed25519 public key (a multiple of the base point) is: not off the curve, not one of
    the eight small-order points, no small-order component."""
    point = _edwards_decode(encoded)
    if point is None or _edwards_times(point, 8) == (0, 1):
        return False
    return _edwards_times(point, _L) == (0, 1)


def ed25519_public_to_x25519(point: bytes) -> bytes:
    """Map an Edwards25519 public key to its Montgomery u-coordinate: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def ed25519_seed_to_x25519_private(seed: bytes) -> bytes:
    """The X25519 private scalar for an ed25519 seed, as ssh-to-age derives it (clamped)."""
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return bytes(digest)


def recipient_for_identity(identity: str) -> str:
    """The ``age1...`` recipient of an ``AGE-SECRET-KEY-1...`` identity."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    decoded = bech32_decode(identity.strip())
    if decoded is None or decoded[0] != IDENTITY_HRP or len(decoded[1]) != 32:
        raise BadInput("not a valid age identity (AGE-SECRET-KEY-1..., bech32 checksum)")
    public = X25519PrivateKey.from_private_bytes(decoded[1]).public_key().public_bytes_raw()
    return recipient_from_public_bytes(public)


def generate_identity() -> str:
    """A new X25519 age identity, as ``age-keygen`` prints it (upper-case bech32)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return identity_from_private_bytes(X25519PrivateKey.generate().private_bytes_raw())


def age_key_from(age_key: str | None, ssh_key: str | None) -> str:
    """The age recipient for whichever of ``--age-key``/``--ssh-key`` was given (exactly one)."""
    if (age_key is None) == (ssh_key is None):
        raise BadInput("give exactly one of --age-key age1... or --ssh-key 'ssh-ed25519 ...'")
    if age_key is not None:
        return check_age_recipient(age_key)
    assert ssh_key is not None
    return parse_ssh_public_key(ssh_key).age_recipient

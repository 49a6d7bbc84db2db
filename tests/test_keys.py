"""age keys: bech32 against age-keygen, and ssh-to-age against real age encryption."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opssecrets import keys as keys_module
from opssecrets.errors import BadInput
from opssecrets.keys import (
    bech32_decode,
    check_age_recipient,
    ed25519_seed_to_x25519_private,
    generate_identity,
    identity_from_private_bytes,
    is_age_identity,
    is_age_recipient,
    parse_ssh_public_key,
    recipient_for_identity,
    recipient_from_public_bytes,
)


def _age_keygen(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "k.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    identity = next(line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
    recipient = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    return identity, recipient


def test_keys_from_age_keygen_validate_and_agree(tmp_path: Path) -> None:
    identity, recipient = _age_keygen(tmp_path)
    assert is_age_identity(identity)
    assert is_age_recipient(recipient)
    assert recipient_for_identity(identity) == recipient


def test_generated_identity_is_accepted_by_age(tmp_path: Path) -> None:
    identity = generate_identity()
    (tmp_path / "id.txt").write_text(identity + "\n")
    printed = subprocess.run(["age-keygen", "-y", str(tmp_path / "id.txt")], check=True, capture_output=True, text=True).stdout.strip()
    assert printed == recipient_for_identity(identity)


@pytest.mark.parametrize("position", [5, 20, 40, 61])
def test_one_wrong_character_is_rejected(tmp_path: Path, position: int) -> None:
    _, recipient = _age_keygen(tmp_path)
    swapped = "q" if recipient[position] != "q" else "p"
    broken = recipient[:position] + swapped + recipient[position + 1 :]
    assert not is_age_recipient(broken)
    with pytest.raises(BadInput, match="checksum"):
        check_age_recipient(broken)


def test_identity_pasted_as_recipient_is_refused_without_echoing_it() -> None:
    identity = generate_identity()
    with pytest.raises(BadInput) as info:
        check_age_recipient(identity)
    assert identity not in info.value.message
    assert "identity" in info.value.message


def _ssh_keypair(tmp_path: Path, kind: str = "ed25519") -> tuple[Path, Path]:
    key = tmp_path / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


def test_ssh_to_age_recipient_decrypts_with_converted_private_key(tmp_path: Path) -> None:
    """Encrypt with age to the converted public key; decrypt with the converted private key."""
    private = Ed25519PrivateKey.generate()
    public_line = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    recipient = parse_ssh_public_key(public_line + " host@example").age_recipient
    seed = private.private_bytes_raw()
    identity = identity_from_private_bytes(ed25519_seed_to_x25519_private(seed))
    assert recipient_for_identity(identity) == recipient
    encrypted = subprocess.run(["age", "-r", recipient], input=b"hello", capture_output=True, check=True).stdout
    (tmp_path / "id.txt").write_text(identity + "\n")
    decrypted = subprocess.run(["age", "-d", "-i", str(tmp_path / "id.txt")], input=encrypted, capture_output=True, check=True)
    assert decrypted.stdout == b"hello"


def test_ssh_public_key_file_and_fingerprint_match_ssh_keygen(tmp_path: Path) -> None:
    _, pub = _ssh_keypair(tmp_path)
    key = parse_ssh_public_key(str(pub))
    expected = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]
    assert key.fingerprint == expected
    assert is_age_recipient(key.age_recipient)


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_non_ed25519_ssh_keys_get_a_clear_error(tmp_path: Path, kind: str) -> None:
    _, pub = _ssh_keypair(tmp_path, kind)
    with pytest.raises(BadInput, match="ed25519"):
        parse_ssh_public_key(pub.read_text())


def test_bech32_rejects_mixed_case() -> None:
    recipient = recipient_for_identity(generate_identity())
    assert bech32_decode(recipient) is not None
    assert bech32_decode(recipient[:10] + recipient[10:].upper()) is None


P = 2**255 - 19
# the u-coordinates of the small-order points of Curve25519, and non-canonical encodings of two
SMALL_ORDER_U = (
    0, 1, P - 1, P, P + 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)  # fmt: skip


@pytest.mark.parametrize("u", SMALL_ORDER_U)
def test_low_order_age_recipients_are_refused(u: int, tmp_path: Path) -> None:
    recipient = recipient_from_public_bytes(u.to_bytes(32, "little"))
    assert is_age_recipient(recipient)  # a well-formed bech32 key: only the curve check catches it
    with pytest.raises(BadInput, match="low-order X25519 point"):
        check_age_recipient(recipient)
    # control: real age cannot use it either, which is why it must be refused up front
    proc = subprocess.run(["age", "-r", recipient], input=b"x", capture_output=True, check=False)
    assert proc.returncode != 0


# the eight small-order points of Edwards25519 (identity, order 2, two of order 4, four of order 8)
SMALL_ORDER_ED25519 = (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
)


def _ssh_line(point: bytes) -> str:
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", point))
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " forged@forgejo"


@pytest.mark.parametrize("point", SMALL_ORDER_ED25519)
def test_small_order_ssh_ed25519_keys_are_refused(point: str) -> None:
    with pytest.raises(BadInput, match="not a valid ed25519 public key"):
        parse_ssh_public_key(_ssh_line(bytes.fromhex(point)))


def test_an_ssh_key_off_the_curve_is_refused() -> None:
    # y = 2: (y^2 - 1) / (d y^2 + 1) has no square root mod p, so no point has it
    with pytest.raises(BadInput, match="not a valid ed25519 public key"):
        parse_ssh_public_key(_ssh_line((2).to_bytes(32, "little")))


def test_an_ssh_key_with_a_small_order_component_is_refused() -> None:
    # a real key plus a point of order 8: on the curve, of large order, but not in the
    # prime-order subgroup every real ed25519 key lives in
    real = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert parse_ssh_public_key(_ssh_line(real)).age_recipient.startswith("age1")
    mixed = keys_module._edwards_add(keys_module._edwards_decode(real), keys_module._edwards_decode(bytes.fromhex(SMALL_ORDER_ED25519[4])))  # type: ignore[arg-type]
    x, y = mixed
    encoded = (y | ((x & 1) << 255)).to_bytes(32, "little")
    with pytest.raises(BadInput, match="not a valid ed25519 public key"):
        parse_ssh_public_key(_ssh_line(encoded))

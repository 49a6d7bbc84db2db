"""age keys: bech32 against age-keygen, and ssh-to-age against real age encryption."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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

"""``identity new|import|show|export|forget`` against real keyring backends chosen by keyring's config."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from conftest import AgeKey, OpsRepo, age_keygen_y, cli_argv, cli_env, stored_identity
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from opssecrets.keys import parse_ssh_public_key

FAIL_BACKEND = "keyring.backends.fail.Keyring"
SECRET_PREFIX = "AGE-SECRET-KEY-"


def openssh_ed25519() -> tuple[bytes, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " eng@laptop"
    return private, public


# --- identity new ---------------------------------------------------------------------------


def test_new_stores_in_keyring_and_prints_only_recipient_and_admin_command(repo: OpsRepo, keyring_store: Path) -> None:
    result = repo.ops("identity", "new", "--name", "alice")
    assert result.code == 0, result
    secret = stored_identity(keyring_store)
    assert secret is not None and secret.startswith(SECRET_PREFIX)
    recipient = age_keygen_y(secret)
    assert f"opssecrets add-engineer alice --age-key {recipient}" in result.out
    assert SECRET_PREFIX not in result.out + result.err
    assert "keyring" in result.err


def test_new_as_a_real_process(repo: OpsRepo, keyring_store: Path) -> None:
    result = repo.ops_proc("identity", "new", "--name", "bob", with_tests=True)
    assert result.code == 0, result
    secret = stored_identity(keyring_store)
    assert secret is not None
    assert result.out.strip().endswith(f"opssecrets add-engineer bob --age-key {age_keygen_y(secret)}")
    assert SECRET_PREFIX not in result.out + result.err


def test_new_defaults_the_name_to_the_login(repo: OpsRepo, keyring_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "carol.smith")
    result = repo.ops("identity", "new")
    assert result.code == 0, result
    assert "opssecrets add-engineer carol-smith --age-key age1" in result.out


def test_new_refuses_to_replace_a_stored_identity(repo: OpsRepo, keyring_store: Path) -> None:
    assert repo.ops("identity", "new", "--name", "alice").code == 0
    before = keyring_store.read_bytes()
    result = repo.ops("identity", "new", "--name", "alice")
    assert result.code == 2, result
    assert "already holds an identity" in result.err and "identity forget" in result.err
    assert keyring_store.read_bytes() == before


def test_new_rejects_a_name_sops_cannot_anchor(repo: OpsRepo, keyring_store: Path) -> None:
    result = repo.ops("identity", "new", "--name", "carol@corp")
    assert result.code == 2, result
    assert "cannot be used" in result.err
    assert not keyring_store.exists()


def test_new_on_a_headless_machine_says_so_and_offers_file_or_stdout(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FAIL_BACKEND)
    result = repo.ops_proc("identity", "new", "--name", "alice")
    assert result.code == 3, result
    assert "no OS keyring is available" in result.err
    assert "--to-file" in result.err and "--stdout" in result.err
    assert result.err.count("\n") == 1  # one line
    assert result.out == ""


def test_new_to_file_writes_mode_0600_keys_txt(repo: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FAIL_BACKEND)
    target = tmp_path / "keys" / "alice.txt"
    result = repo.ops("identity", "new", "--name", "alice", "--to-file", str(target))
    assert result.code == 0, result
    assert target.stat().st_mode & 0o777 == 0o600
    text = target.read_text()
    secret = next(line for line in text.splitlines() if line.startswith(SECRET_PREFIX))
    recipient = age_keygen_y(secret)
    assert f"# public key: {recipient}" in text
    assert f"add-engineer alice --age-key {recipient}" in result.out
    assert SECRET_PREFIX not in result.out + result.err
    assert "SOPS_AGE_KEY_FILE=" in result.err


def test_new_to_file_never_replaces_a_file(repo: OpsRepo, tmp_path: Path) -> None:
    target = tmp_path / "keys.txt"
    target.write_text("# someone's keys\n")
    result = repo.ops("identity", "new", "--to-file", str(target))
    assert result.code == 2, result
    assert "already exists" in result.err
    assert target.read_text() == "# someone's keys\n"


def test_new_to_stdout_prints_keys_txt_and_sends_the_rest_to_stderr(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FAIL_BACKEND)
    result = repo.ops_proc("identity", "new", "--name", "dan", "--stdout")
    assert result.code == 0, result
    secret = next(line for line in result.out.splitlines() if line.startswith(SECRET_PREFIX))
    assert f"add-engineer dan --age-key {age_keygen_y(secret)}" in result.err
    assert SECRET_PREFIX not in result.err
    assert "warning" not in result.err  # not a terminal: a pipe gets no warning


def test_new_rejects_both_destinations(repo: OpsRepo, tmp_path: Path) -> None:
    result = repo.ops("identity", "new", "--to-file", str(tmp_path / "k"), "--stdout")
    assert result.code == 2, result
    assert not (tmp_path / "k").exists()


# --- identity import ------------------------------------------------------------------------


def test_import_keys_txt_with_comments(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    key = AgeKey.new()
    source = tmp_path / "keys.txt"
    source.write_text(f"# created: today\n# public key: {key.recipient}\n\n{key.identity}\n")
    result = repo.ops("identity", "import", "--from-file", str(source))
    assert result.code == 0, result
    assert stored_identity(keyring_store) == key.identity
    assert result.out.strip() == key.recipient
    assert "still holds it in plaintext" in result.err
    assert SECRET_PREFIX not in result.out + result.err


def test_import_from_stdin(repo: OpsRepo, keyring_store: Path) -> None:
    key = AgeKey.new()
    result = repo.ops_proc("identity", "import", "--stdin", stdin=key.identity + "\n", with_tests=True)
    assert result.code == 0, result
    assert stored_identity(keyring_store) == key.identity
    assert result.out.strip() == key.recipient


def test_import_openssh_ed25519_converts_like_ssh_to_age(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    private, public = openssh_ed25519()
    source = tmp_path / "id_ed25519"
    source.write_bytes(private)
    result = repo.ops("identity", "import", "--from-file", str(source))
    assert result.code == 0, result
    secret = stored_identity(keyring_store)
    assert secret is not None
    expected = parse_ssh_public_key(public).age_recipient  # the public half, converted independently
    assert age_keygen_y(secret) == expected
    assert result.out.strip() == expected


def test_imported_ssh_identity_decrypts_what_age_encrypted_to_the_ssh_key(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    private, public = openssh_ed25519()
    source = tmp_path / "id_ed25519"
    source.write_bytes(private)
    assert repo.ops("identity", "import", "--from-file", str(source)).code == 0
    recipient = parse_ssh_public_key(public).age_recipient
    sealed = subprocess.run(["age", "-r", recipient], input=b"handed over", capture_output=True, check=True).stdout
    (tmp_path / "m.age").write_bytes(sealed)
    secret = stored_identity(keyring_store)
    assert secret is not None
    opened = subprocess.run(["age", "-d", "-i", "-", str(tmp_path / "m.age")], input=secret.encode(), capture_output=True, check=True)
    assert opened.stdout == b"handed over"


def test_import_refuses_an_rsa_key(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    source = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(source)], check=True)
    result = repo.ops("identity", "import", "--from-file", str(source))
    assert result.code == 2, result
    assert "only ed25519" in result.err
    assert stored_identity(keyring_store) is None


def test_import_refuses_several_identities_and_bad_lines_without_quoting_them(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    one, two = AgeKey.new(), AgeKey.new()
    several = tmp_path / "several.txt"
    several.write_text(f"{one.identity}\n{two.identity}\n")
    result = repo.ops("identity", "import", "--from-file", str(several))
    assert result.code == 2, result
    assert "holds 2 identities" in result.err
    broken = tmp_path / "broken.txt"
    damaged = one.identity[:-3] + ("QQQ" if not one.identity.endswith("QQQ") else "PPP")
    broken.write_text(f"# mine\n{damaged}\n")
    result = repo.ops("identity", "import", "--from-file", str(broken))
    assert result.code == 2, result
    assert "line 2" in result.err
    assert damaged[15:40] not in result.err and one.identity[15:40] not in result.err
    assert stored_identity(keyring_store) is None


def test_import_needs_exactly_one_source(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    assert repo.ops("identity", "import").code == 2
    source = tmp_path / "k.txt"
    source.write_text(AgeKey.new().identity + "\n")
    result = repo.ops("identity", "import", "--from-file", str(source), "--stdin")
    assert result.code == 2, result
    assert "exactly one" in result.err
    assert stored_identity(keyring_store) is None


def test_import_same_identity_twice_is_a_no_op_and_a_different_one_is_refused(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    first, other = AgeKey.new(), AgeKey.new()
    (tmp_path / "a.txt").write_text(first.identity + "\n")
    (tmp_path / "b.txt").write_text(other.identity + "\n")
    assert repo.ops("identity", "import", "--from-file", str(tmp_path / "a.txt")).code == 0
    again = repo.ops("identity", "import", "--from-file", str(tmp_path / "a.txt"))
    assert again.code == 0 and "already in the keyring" in again.err
    refused = repo.ops("identity", "import", "--from-file", str(tmp_path / "b.txt"))
    assert refused.code == 2, refused
    assert stored_identity(keyring_store) == first.identity


def test_import_on_a_headless_machine_points_at_sops_age_key_file(repo: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FAIL_BACKEND)
    source = tmp_path / "k.txt"
    source.write_text(AgeKey.new().identity + "\n")
    result = repo.ops("identity", "import", "--from-file", str(source))
    assert result.code == 3, result
    assert f"SOPS_AGE_KEY_FILE={source}" in result.err


# --- show, export, forget -------------------------------------------------------------------


def test_show_prints_the_recipient_and_its_source(repo: OpsRepo, keyring_store: Path) -> None:
    key = AgeKey.new()
    repo.ops("identity", "import", "--stdin", stdin=key.identity)
    result = repo.ops("identity", "show")
    assert result.code == 0, result
    assert result.out.strip() == key.recipient
    assert "keyring" in result.err
    as_json = json.loads(repo.ops("identity", "show", "--json").out)
    assert as_json["source"] == "keyring" and as_json["recipients"] == [key.recipient]


def test_show_prefers_the_users_own_variable(repo: OpsRepo, keyring_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_keyring, in_env = AgeKey.new(), AgeKey.new()
    repo.ops("identity", "import", "--stdin", stdin=in_keyring.identity)
    monkeypatch.setenv("SOPS_AGE_KEY", in_env.identity)
    result = repo.ops("identity", "show")
    assert result.out.strip() == in_env.recipient
    assert "$SOPS_AGE_KEY" in result.err


def test_show_without_any_identity(repo: OpsRepo, keyring_store: Path) -> None:
    result = repo.ops("identity", "show")
    assert result.code == 3, result
    assert "identity new" in result.err


def test_export_prints_the_identity_and_warns_only_on_a_terminal(repo: OpsRepo, keyring_store: Path) -> None:
    key = AgeKey.new()
    repo.ops("identity", "import", "--stdin", stdin=key.identity)
    piped = repo.ops_proc("identity", "export", with_tests=True)
    assert piped.code == 0, piped
    assert key.identity in piped.out.splitlines()
    assert piped.err == ""
    # on a terminal: a real pty as stdout
    leader, follower = pty.openpty()
    env = cli_env(with_tests=True)
    proc = subprocess.run(  # stdout is a terminal here
        cli_argv("identity", "export"),
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        check=False,
    )
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:
        pass
    os.close(leader)
    assert proc.returncode == 0
    assert key.identity.encode() in shown
    assert b"warning: this is your private age identity" in proc.stderr


def test_export_without_a_keyring_identity(repo: OpsRepo, keyring_store: Path) -> None:
    result = repo.ops("identity", "export")
    assert result.code == 3, result
    assert result.out == ""


def test_forget_asks_unless_yes(repo: OpsRepo, keyring_store: Path) -> None:
    key = AgeKey.new()
    repo.ops("identity", "import", "--stdin", stdin=key.identity)
    refused = repo.ops_proc("identity", "forget", with_tests=True)
    assert refused.code == 2, refused
    assert "--yes" in refused.err
    assert stored_identity(keyring_store) == key.identity
    done = repo.ops("identity", "forget", "--yes")
    assert done.code == 0, done
    assert stored_identity(keyring_store) is None
    assert key.recipient in done.err
    again = repo.ops("identity", "forget", "--yes")
    assert again.code == 0 and "nothing to forget" in again.err


def test_import_at_a_terminal_prompts_without_echo(repo: OpsRepo, keyring_store: Path) -> None:
    key = AgeKey.new()
    leader, follower = pty.openpty()
    env = cli_env(with_tests=True)
    proc = subprocess.Popen(  # a terminal on every stream
        cli_argv("identity", "import", "--stdin"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    shown = b""
    while b"AGE-SECRET-KEY-1...)" not in shown:
        shown += os.read(leader, 1024)
    os.write(leader, key.identity.encode() + b"\n")
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:
        pass
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert stored_identity(keyring_store) == key.identity
    assert key.recipient.encode() in shown
    assert key.identity.encode() not in shown  # the terminal never echoed it

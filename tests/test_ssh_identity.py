"""Engineers whose key is an SSH key: passphrase-protected OpenSSH ed25519 keys, imported or used
in place (``SOPS_AGE_SSH_PRIVATE_KEY_FILE``, ``~/.ssh/id_ed25519``), against the real sops."""

from __future__ import annotations

import json
import os
import pty
import secrets
import subprocess
from pathlib import Path

import pytest
from conftest import AgeKey, OpsRepo, age_keygen_y, cli_argv, cli_env, run_sops, sops_env, stored_identity
from guard_support import slack_bot

from opssecrets.keys import parse_ssh_public_key

PASSPHRASE = "pass " + secrets.token_urlsafe(12)  # generated per run, with a space as people type them
VALUE = slack_bot()


def make_ssh_key(path: Path, passphrase: str) -> str:
    """A real ssh-keygen ed25519 key at ``path``; returns its ssh-to-age recipient (from the .pub)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "eng@laptop", "-f", str(path)], check=True)
    return parse_ssh_public_key(path.with_name(path.name + ".pub").read_text()).age_recipient


@pytest.fixture
def alice_ssh(repo: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """alice's passphrase-protected SSH key; .sops.yaml lists its ssh-to-age recipient (as
    add-engineer --ssh-key writes it) next to admin dan; a file encrypted for both. Afterwards
    only alice's SSH key is around: no SOPS_AGE_KEY, no keyring, no keys.txt."""
    key = tmp_path / "alice" / "id_ed25519"
    recipient = make_ssh_key(key, PASSPHRASE)
    repo.write(
        ".sops.yaml",
        "keys:\n"
        f"  - &admin_dan {repo.operator.recipient}\n"
        f"  - &alice {recipient}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/\n"
        "    age: [*admin_dan, *alice]\n",
    )
    repo.encrypt("secrets/secrets.yaml", f"slack:\n  bot_token: {VALUE}\n")
    monkeypatch.delenv("SOPS_AGE_KEY")
    repo.extra_env.clear()
    return key, recipient


def plain_sops_decrypt(repo: OpsRepo, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return run_sops("decrypt", "secrets/secrets.yaml", cwd=repo.root, env=sops_env(env))


def assert_no_secret(result_text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result_text


# --- identity import of a passphrase-protected key ------------------------------------------


def test_import_passphrase_protected_key_with_ssh_to_age_passphrase(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    recipient = make_ssh_key(key, PASSPHRASE)
    before = key.read_bytes()
    result = repo.ops_proc("identity", "import", "--from-file", str(key), env={"SSH_TO_AGE_PASSPHRASE": PASSPHRASE}, with_tests=True)
    assert result.code == 0, result
    secret = stored_identity(keyring_store)
    assert secret is not None
    assert age_keygen_y(secret) == recipient  # the real age agrees with the conversion of the public half
    assert result.out.strip() == recipient
    assert "shred" not in result.err  # an SSH key is also the user's login: never told to delete it
    assert key.read_bytes() == before
    assert_no_secret(result.out + result.err, PASSPHRASE, secret)


@pytest.mark.parametrize(("passphrase", "message"), [("wrong horse", "wrong passphrase for"), ("", "set SSH_TO_AGE_PASSPHRASE")])
def test_import_with_a_wrong_or_no_passphrase_is_one_line_exit_2(
    repo: OpsRepo, keyring_store: Path, tmp_path: Path, passphrase: str, message: str
) -> None:
    key = tmp_path / "id_ed25519"
    make_ssh_key(key, PASSPHRASE)
    before = key.read_bytes()
    result = repo.ops_proc(
        "identity",
        "import",
        "--from-file",
        str(key),
        stdin="",
        env={"SSH_TO_AGE_PASSPHRASE": passphrase},
        with_tests=True,
    )
    assert result.code == 2, result
    assert message in result.err and str(key) in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert_no_secret(result.out + result.err, PASSPHRASE)
    if passphrase:
        assert passphrase not in result.err
    assert stored_identity(keyring_store) is None
    assert key.read_bytes() == before


def test_import_at_a_terminal_asks_for_the_passphrase_without_echo(repo: OpsRepo, keyring_store: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    recipient = make_ssh_key(key, PASSPHRASE)
    leader, follower = pty.openpty()
    env = cli_env(base={k: v for k, v in os.environ.items() if k != "SSH_TO_AGE_PASSPHRASE"}, with_tests=True)
    proc = subprocess.Popen(  # a terminal on every stream
        cli_argv("identity", "import", "--from-file", str(key)),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,  # the pty becomes the controlling terminal getpass opens
    )
    os.close(follower)
    shown = b""
    while b"Passphrase for" not in shown:
        shown += os.read(leader, 1024)
    os.write(leader, PASSPHRASE.encode() + b"\n")
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:
        pass
    os.close(leader)
    assert proc.wait(timeout=60) == 0, shown
    assert recipient.encode() in shown
    assert PASSPHRASE.encode() not in shown  # the terminal never echoed it
    secret = stored_identity(keyring_store)
    assert secret is not None and age_keygen_y(secret) == recipient


# --- the SSH key used in place ---------------------------------------------------------------


def test_ssh_key_variable_decrypts_through_opssecrets_with_only_the_ssh_key(repo: OpsRepo, alice_ssh: tuple[Path, str]) -> None:
    key, recipient = alice_ssh
    env = {"SOPS_AGE_SSH_PRIVATE_KEY_FILE": str(key), "SSH_TO_AGE_PASSPHRASE": PASSPHRASE}
    # control: sops' native SSH identity cannot open the ssh-to-age recipient sops-nix uses
    native = plain_sops_decrypt(repo, env)
    assert native.returncode != 0 and VALUE.encode() not in native.stdout
    doctor = repo.ops_proc("doctor", env=env)
    assert doctor.code == 0, doctor
    assert f"$SOPS_AGE_SSH_PRIVATE_KEY_FILE (converted like ssh-to-age): {recipient}; sops opens 1 of 1 secret file(s)" in doctor.out
    bob = AgeKey.new()
    added = repo.ops_proc("add-engineer", "bob", "--age-key", bob.recipient, "--admin", env=env)
    assert added.code == 0, added  # sops updatekeys had to decrypt the data key with alice's SSH key
    opened = repo.decrypt("secrets/secrets.yaml", identity=bob)
    assert opened.returncode == 0 and VALUE.encode() in opened.stdout
    for result in (doctor, added):
        assert_no_secret(result.out + result.err, PASSPHRASE, VALUE)


def test_only_home_ssh_key_is_enough(repo: OpsRepo, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sops' own fallback, ~/.ssh/id_ed25519, with nothing else configured."""
    key = isolated_home / ".ssh" / "id_ed25519"
    recipient = make_ssh_key(key, PASSPHRASE)
    repo.write(
        ".sops.yaml",
        f"keys:\n  - &admin_dan {repo.operator.recipient}\n  - &alice {recipient}\n"
        "creation_rules:\n  - path_regex: ^secrets/\n    age: [*admin_dan, *alice]\n",
    )
    repo.encrypt("secrets/secrets.yaml", f"slack:\n  bot_token: {VALUE}\n")
    monkeypatch.delenv("SOPS_AGE_KEY")
    repo.extra_env.clear()
    assert plain_sops_decrypt(repo, {}).returncode != 0  # control: sops alone cannot
    env = {"SSH_TO_AGE_PASSPHRASE": PASSPHRASE}
    show = repo.ops_proc("identity", "show", env=env)
    assert show.code == 0 and show.out.strip() == recipient, show
    bob = AgeKey.new()
    added = repo.ops_proc("add-engineer", "bob", "--age-key", bob.recipient, "--admin", env=env)
    assert added.code == 0, added
    assert repo.decrypt("secrets/secrets.yaml", identity=bob).returncode == 0


def test_ssh_key_variable_without_its_passphrase_is_exit_2_and_changes_nothing(repo: OpsRepo, alice_ssh: tuple[Path, str]) -> None:
    key, _ = alice_ssh
    before = repo.snapshot()
    for passphrase, message in (("wrong horse", "wrong passphrase for"), ("", "set SSH_TO_AGE_PASSPHRASE")):
        env = {"SOPS_AGE_SSH_PRIVATE_KEY_FILE": str(key), "SSH_TO_AGE_PASSPHRASE": passphrase}
        result = repo.ops_proc("add-engineer", "bob", "--age-key", AgeKey.new().recipient, "--admin", stdin="", env=env)
        assert result.code == 2, result
        assert message in result.err and result.err.count("\n") == 1
        assert PASSPHRASE not in result.err and (not passphrase or passphrase not in result.err)
        assert repo.snapshot() == before
        doctor = repo.ops_proc("doctor", "--json", stdin="", env=env)
        assert doctor.code == 1, doctor
        identity = {c["name"]: c for c in json.loads(doctor.out)["checks"]}["identity"]
        assert identity["ok"] is False and message in identity["found"]


def test_the_passphrase_reaches_no_child(repo: OpsRepo, alice_ssh: tuple[Path, str], tmp_path: Path) -> None:
    """sops and git children get the converted identity (sops) or nothing, never the passphrase."""
    key, _ = alice_ssh
    real_sops = subprocess.run(["which", "sops"], capture_output=True, text=True, check=True).stdout.strip()
    spy = tmp_path / "spy-sops"
    log = tmp_path / "sops-env.log"
    spy.write_text(f'#!/bin/sh\nenv >> {log}\nexec {real_sops} "$@"\n')
    spy.chmod(0o755)
    env = {"SOPS_AGE_SSH_PRIVATE_KEY_FILE": str(key), "SSH_TO_AGE_PASSPHRASE": PASSPHRASE, "OPSSECRETS_SOPS": str(spy)}
    result = repo.ops_proc("doctor", env=env)
    assert result.code == 0, result
    seen = log.read_text()
    assert "SOPS_AGE_KEY=AGE-SECRET-KEY-1" in seen  # the conversion went to sops, in its environment
    assert PASSPHRASE not in seen and "SSH_TO_AGE_PASSPHRASE" not in seen


# --- doctor never says ok while sops opens nothing ----------------------------------------------


def test_doctor_with_an_identity_that_opens_nothing_is_not_ok(repo: OpsRepo, alice_ssh: tuple[Path, str], tmp_path: Path) -> None:
    stranger = AgeKey.new()
    keys = tmp_path / "keys.txt"
    keys.write_text(stranger.identity + "\n")
    result = repo.ops_proc("doctor", "--json", env={"SOPS_AGE_KEY_FILE": str(keys)})
    assert result.code == 1, result
    report = json.loads(result.out)
    identity = {c["name"]: c for c in report["checks"]}["identity"]
    assert identity["ok"] is False
    assert "reads none of the 1 secret file(s)" in identity["found"]
    assert f"--age-key {stranger.recipient}" in identity["fix"]
    assert [f["decrypts"] for f in report["files"]] == [False]

"""Hardware-backed keys: age plugin recipients (``age1yubikey1...``) and identities
(``AGE-PLUGIN-YUBIKEY-1...``), generated at run time with a correct bech32 checksum."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, AgeKey, OpsRepo

from opssecrets.errors import BadInput
from opssecrets.keys import bech32_encode, check_age_recipient, plugin_of_identity, plugin_of_recipient

TESTS = Path(__file__).resolve().parent
CHILD_PATH = {"PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{TESTS}"}
PLUGINS = ("yubikey", "se", "tpm", "fido2-hmac")


def plugin_recipient(name: str) -> str:
    """A plugin recipient as its plugin would print one: ``age1NAME1`` + payload + checksum."""
    return bech32_encode("age1" + name, os.urandom(33))


def plugin_identity(name: str) -> str:
    return bech32_encode(f"age-plugin-{name}-", os.urandom(40)).upper()


def flip(text: str, position: int) -> str:
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    char = text[position]
    return text[:position] + alphabet[(alphabet.index(char) + 1) % 32] + text[position + 1 :]


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_recipients_with_a_valid_checksum_are_accepted_and_a_typo_is_not(name: str) -> None:
    recipient = plugin_recipient(name)
    assert check_age_recipient(recipient) == recipient
    assert plugin_of_recipient(recipient) == name
    with pytest.raises(BadInput, match="bech32 checksum"):
        check_age_recipient(flip(recipient, len(recipient) - 10))
    with pytest.raises(BadInput, match="not an age recipient"):
        check_age_recipient(recipient.upper())  # age prints recipients in lower case only
    assert plugin_of_identity(plugin_identity(name)) == name


def test_age_itself_reads_our_plugin_recipients_as_plugin_recipients() -> None:
    """An independent check of the generator: the real age parses the recipient and looks for its plugin."""
    recipient = plugin_recipient("yubikey")
    proc = subprocess.run(["age", "-r", recipient], input=b"x", capture_output=True, check=False)
    assert proc.returncode != 0
    assert b"age-plugin-yubikey" in proc.stderr and b"malformed" not in proc.stderr.lower()


@pytest.fixture
def with_yubikey_admin(repo: OpsRepo) -> tuple[OpsRepo, AgeKey, str]:
    """dan (operator) and alice read secrets/; admin_yk (a YubiKey recipient) is in keys: and, by
    hand, in the rule, so the file drifts: re-encrypting it needs age-plugin-yubikey."""
    alice = AgeKey.new()
    yk = plugin_recipient("yubikey")
    base = (
        "keys:\n"
        f"  - &admin_dan {repo.operator.recipient}\n"
        f"  - &alice {alice.recipient}\n"
        f"  - &admin_yk {yk}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/\n"
        "    age: [*admin_dan, *alice]\n"
    )
    repo.write(".sops.yaml", base)
    repo.encrypt("secrets/secrets.yaml", "slack:\n  bot_token: xoxb-0001\n")
    repo.write(".sops.yaml", base.replace("[*admin_dan, *alice]", "[*admin_dan, *alice, *admin_yk]"))
    return repo, alice, yk


def test_recipients_lists_a_plugin_recipient_with_its_plugin_and_lint_accepts_it(with_yubikey_admin: tuple[OpsRepo, AgeKey, str]) -> None:
    repo, _, yk = with_yubikey_admin
    rows = {row["name"]: row for row in json.loads(repo.ops("recipients", "--json").out)["recipients"]}
    assert rows["yk"]["key"] == yk and rows["yk"]["plugin"] == "yubikey" and rows["yk"]["role"] == "admin"
    assert rows["dan"]["plugin"] is None
    table = repo.ops("recipients").out
    assert "plugin" in table.splitlines()[0]
    [yk_row] = [line.split() for line in table.splitlines() if line.split()[:2] == ["yk", "admin"]]
    assert yk_row[yk_row.index("age") + 1] == "yubikey"  # the type column, then the plugin column
    assert repo.ops("lint").code == 0


def test_adding_a_plugin_recipient_without_its_plugin_is_exit_3_and_changes_nothing(repo: OpsRepo) -> None:
    rules = "creation_rules:\n  - path_regex: ^secrets/\n    age: [*admin_dan]\n"
    repo.write(".sops.yaml", f"keys:\n  - &admin_dan {repo.operator.recipient}\n{rules}")
    repo.encrypt("secrets/secrets.yaml", "a: 1\n")
    before = repo.snapshot()
    yk = plugin_recipient("yubikey")
    result = repo.ops("add-engineer", "yk", "--age-key", yk, "--admin")
    assert result.code == 3, result
    assert "age-plugin-yubikey" in result.err and "not on PATH" in result.err and "secrets/secrets.yaml" in result.err
    assert result.err.count("\n") == 1
    assert repo.snapshot() == before
    dry = repo.ops("add-engineer", "yk", "--age-key", yk, "--admin", "--dry-run")  # planning needs no plugin
    assert dry.code == 0 and yk in dry.out + dry.err


@pytest.mark.parametrize("command", [["remove-engineer", "alice"], ["reencrypt"]])
def test_reencrypting_for_a_plugin_recipient_checks_the_plugin_before_anything_changes(
    with_yubikey_admin: tuple[OpsRepo, AgeKey, str], command: list[str]
) -> None:
    repo, _, _ = with_yubikey_admin
    before = repo.snapshot()
    result = repo.ops(*command)
    assert result.code == 3, result
    assert "needs age-plugin-yubikey" in result.err
    assert repo.snapshot() == before  # .sops.yaml, the secret file and the ledger (remove-engineer writes one) byte-identical
    assert not (repo.root / ".opssecrets").exists()


def test_doctor_lists_the_plugins_on_path_and_notes_a_missing_one(with_yubikey_admin: tuple[OpsRepo, AgeKey, str], tmp_path: Path) -> None:
    repo, _, _ = with_yubikey_admin
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir()
    fake = bin_dir / "age-plugin-fake"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    (bin_dir / "age-plugin-notrun").write_text("#!/bin/sh\n")  # not executable: not a plugin
    result = repo.ops_proc("doctor", "--json", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    plugins = {c["name"]: c for c in json.loads(result.out)["checks"]}["plugins"]
    assert f"fake ({fake})" in plugins["found"] and "notrun" not in plugins["found"]
    assert plugins["ok"] is False and plugins["needed"] is False
    assert "age-plugin-yubikey" in plugins["found"] and "install age-plugin-yubikey" in plugins["fix"]


def test_a_plugin_identity_is_accepted_into_the_keyring(repo: OpsRepo, keyring_store: Path) -> None:
    identity = plugin_identity("yubikey")
    result = repo.ops("identity", "import", "--stdin", stdin=f"# Serial: 1, Slot: 1\n{identity}\n")
    assert result.code == 0, result
    assert json.loads(keyring_store.read_text())["opssecrets"]["age-identity"] == identity
    assert result.out == "" and "age-plugin-yubikey identity" in result.err
    shown = repo.ops("identity", "show", "--json")
    assert json.loads(shown.out)["source"] == "keyring"
    broken = repo.ops("identity", "import", "--stdin", stdin=identity[:-3] + ("QQQ" if identity[-3:] != "QQQ" else "PPP") + "\n")
    assert broken.code == 2 and "checksum" in broken.err


def test_sharing_with_a_plugin_recipient_without_its_plugin_is_exit_3_before_decrypting(
    with_yubikey_admin: tuple[OpsRepo, AgeKey, str],
) -> None:
    repo, _, _ = with_yubikey_admin
    result = repo.ops("share", "slack/bot_token", "--to", "yk")
    assert result.code == 3, result
    assert "sharing slack/bot_token with admin_yk" in result.err and "needs age-plugin-yubikey" in result.err
    assert result.out == "" and "xoxb-0001" not in result.err


def test_with_the_plugin_on_path_the_change_reaches_sops_which_runs_that_plugin(repo: OpsRepo, tmp_path: Path) -> None:
    """The check looks where sops looks: with a (fake, failing) age-plugin-yubikey on PATH the change
    goes on to sops, sops runs that very program to wrap the data key, and its failure changes nothing.
    Real plugin encryption is not claimed here: no real plugin is installed."""
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    fake = bin_dir / "age-plugin-yubikey"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    fake.chmod(0o755)
    rules = "creation_rules:\n  - path_regex: ^secrets/\n    age: [*admin_dan]\n"
    repo.write(".sops.yaml", f"keys:\n  - &admin_dan {repo.operator.recipient}\n{rules}")
    repo.encrypt("secrets/secrets.yaml", "a: 1\n")
    before = repo.snapshot()
    path = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = repo.ops_proc("add-engineer", "yk", "--age-key", plugin_recipient("yubikey"), "--admin", env=path)
    assert result.code == 4, result
    assert "not on PATH" not in result.err
    assert "--age-plugin=recipient-v1" in calls.read_text()  # sops ran our PATH's plugin
    assert repo.snapshot() == before

"""``share KEY --to NAME``: the value reaches age on stdin and leaves armored for one recipient."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import AgeKey, OpsRepo
from guard_support import slack_bot

from opssecrets.sops import find_age

ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----"


@pytest.fixture
def team(repo: OpsRepo) -> dict[str, AgeKey]:
    keys = {"dan": repo.operator, "alice": AgeKey.new()}
    repo.write(
        ".sops.yaml",
        "keys:\n"
        f"  - &dan {keys['dan'].recipient}\n"
        f"  - &alice {keys['alice'].recipient}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/\n"
        "    age: [*dan]\n"
        "  - path_regex: ^projects/\n"
        "    age: [*dan, *alice]\n",
    )
    return keys


def open_with(identity: AgeKey, armored: str, tmp_path: Path) -> str:
    keyfile = tmp_path / f"{identity.recipient[-8:]}.txt"
    keyfile.write_text(identity.identity + "\n")
    proc = subprocess.run(["age", "-d", "-i", str(keyfile)], input=armored.encode(), capture_output=True, check=True)
    return proc.stdout.decode()


def test_share_encrypts_the_current_value_to_the_named_recipient(repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path) -> None:
    token = slack_bot()
    repo.encrypt("projects/hello-bot/secrets.yaml", f"slack:\n  bot_token: {token}\nacme-email: ops@example.org\n")
    before = repo.snapshot()
    result = repo.ops_proc("share", "slack/bot_token", "--to", "alice")
    assert result.code == 0, result
    assert result.out.startswith(ARMOR) and result.out.rstrip().endswith("-----END AGE ENCRYPTED FILE-----")
    assert open_with(team["alice"], result.out, tmp_path) == token
    assert token not in result.out + result.err
    assert "alice" in result.err and "projects/hello-bot/secrets.yaml" in result.err
    assert "outside the rule" not in result.err  # alice reads that rule: nothing to record
    assert repo.snapshot() == before
    # not readable by anyone else, the sharer included
    keyfile = tmp_path / "dan.txt"
    keyfile.write_text(team["dan"].identity + "\n")
    proc = subprocess.run(["age", "-d", "-i", str(keyfile)], input=result.out.encode(), capture_output=True, check=False)
    assert proc.returncode != 0


def test_share_to_an_age_recipient_and_the_value_goes_to_age_on_stdin(
    repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = slack_bot()
    repo.encrypt("projects/hello-bot/secrets.yaml", f"bot_token: {token}\n")
    outsider = AgeKey.new()
    log = tmp_path / "age-argv"
    spy = tmp_path / "age-spy"
    spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{find_age().path}" "$@"\n')
    spy.chmod(0o755)
    monkeypatch.setenv("OPSSECRETS_AGE", str(spy))
    result = repo.ops("share", "bot_token", "--to", outsider.recipient, "--outside-rule")
    assert result.code == 0, result
    assert open_with(outsider, result.out, tmp_path) == token
    argv = log.read_text()
    assert f"-r {outsider.recipient} -a" in argv
    assert token not in argv


def test_key_in_several_files_needs_file(repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path) -> None:
    first, second = slack_bot(), slack_bot()
    repo.encrypt("secrets/a.yaml", f"token: {first}\n")
    repo.encrypt("projects/hello-bot/b.yaml", f"token: {second}\n")
    result = repo.ops("share", "token", "--to", "alice")
    assert result.code == 2, result
    assert "in 2 files" in result.err and "--file" in result.err
    assert result.out == ""
    chosen = repo.ops("share", "token", "--to", "alice", "--file", "projects/hello-bot/b.yaml")
    assert chosen.code == 0, chosen
    assert open_with(team["alice"], chosen.out, tmp_path) == second


def test_without_file_the_policy_default_file_wins_as_for_rotate(repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path) -> None:
    """The same answer to "which file holds KEY" as rotate: secrets/secrets.yaml (the policy's
    default file) when it holds the key, even if another file has one of that name."""
    platform_value, project_value = slack_bot(), slack_bot()
    repo.encrypt("secrets/secrets.yaml", f"token: {platform_value}\n")
    repo.encrypt("projects/hello-bot/secrets.yaml", f"token: {project_value}\n")
    result = repo.ops("share", "token", "--to", "dan")
    assert result.code == 0, result
    assert open_with(team["dan"], result.out, tmp_path) == platform_value
    assert "from secrets/secrets.yaml" in result.err


def test_file_from_a_sub_folder_is_read_from_there_else_from_the_root(
    repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path
) -> None:
    chosen = slack_bot()
    repo.encrypt("projects/hello-bot/secrets.yaml", f"token: {chosen}\n")
    repo.encrypt("projects/other/secrets.yaml", f"token: {slack_bot()}\n")  # so --file is needed
    repo.monkeypatch.chdir(repo.root / "projects")
    # as tab completion gives it here, and as opssecrets prints it (from the root)
    for given in ("hello-bot/secrets.yaml", "projects/hello-bot/secrets.yaml", "./hello-bot/../hello-bot/secrets.yaml"):
        result = repo.ops("share", "token", "--to", "alice", "--file", given)
        assert result.code == 0, (given, result)
        assert open_with(team["alice"], result.out, tmp_path) == chosen
        assert "from projects/hello-bot/secrets.yaml" in result.err
    missing = repo.ops("share", "token", "--to", "alice", "--file", "nowhere.yaml")
    assert missing.code == 2 and "--file nowhere.yaml does not exist" in missing.err, missing
    assert str(repo.root / "projects") in missing.err and missing.out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("share", "nothere", "--to", "alice"), "no secret file has a key 'nothere'"),
        (("share", "token", "--to", "carol"), "no recipient named 'carol'"),
        (("share", "token", "--to", "age1notreally"), "bech32"),
        (("share", "token", "--to", "alice", "--file", "README.md"), "not a sops-encrypted file"),
        (("share", "token", "--to", "alice", "--file", "missing.yaml"), "does not exist"),
        (("share", "other", "--to", "alice", "--file", "secrets/a.yaml"), "no key 'other' in secrets/a.yaml"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(repo: OpsRepo, team: dict[str, AgeKey], args: tuple[str, ...], message: str) -> None:
    repo.encrypt("secrets/a.yaml", f"token: {slack_bot()}\n")
    repo.write("README.md", "# ops\n")
    before = repo.snapshot()
    result = repo.ops(*args)
    assert result.code == 2, result
    assert message in result.err
    assert result.err.count("\n") == 1
    assert result.out == ""
    assert repo.snapshot() == before


def test_a_value_you_cannot_read_cannot_be_shared(repo: OpsRepo, team: dict[str, AgeKey], monkeypatch: pytest.MonkeyPatch) -> None:
    repo.encrypt("secrets/a.yaml", f"token: {slack_bot()}\n")
    monkeypatch.setenv("SOPS_AGE_KEY", team["alice"].identity)  # alice is not a recipient of secrets/
    result = repo.ops("share", "token", "--to", "dan")
    assert result.code == 3, result
    assert "no identity here can decrypt secrets/a.yaml" in result.err


def test_missing_age_is_reported_before_anything_is_decrypted(
    repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.encrypt("secrets/a.yaml", f"token: {slack_bot()}\n")
    monkeypatch.setenv("OPSSECRETS_AGE", str(tmp_path / "no-age-here"))
    result = repo.ops("share", "token", "--to", "dan")
    assert result.code == 3, result
    assert "OPSSECRETS_AGE" in result.err


def test_share_outside_the_rule_is_refused_unless_asked_and_then_recorded_as_an_exposure(
    repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path
) -> None:
    """alice does not read secrets/: handing her a value there is an exposure, never silent."""
    token = slack_bot()
    repo.encrypt("secrets/secrets.yaml", f"slack:\n  bot_token: {token}\n")
    before = repo.snapshot()
    refused = repo.ops("share", "slack/bot_token", "--to", "alice")
    assert refused.code == 2, refused
    assert "alice is not among the readers" in refused.err and "--outside-rule" in refused.err
    assert refused.err.count("\n") == 1 and refused.out == ""
    assert repo.snapshot() == before  # no ledger entry, no file
    done = repo.ops("share", "slack/bot_token", "--to", "alice", "--outside-rule")
    assert done.code == 0, done
    assert open_with(team["alice"], done.out, tmp_path) == token
    assert "recorded in the ledger as exposed" in done.err
    ledger = json.loads((repo.root / ".opssecrets/ledger.json").read_text())
    exposures = ledger["files"]["secrets/secrets.yaml"]["keys"]["slack/bot_token"]["exposed_to"]
    assert [e["reader"] for e in exposures] == ["alice"]
    status = repo.ops("status", "--json")
    rows = {row["key"]: row for row in json.loads(status.out)["secrets"]}
    assert rows["slack/bot_token"]["state"] == "exposed"

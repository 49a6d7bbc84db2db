"""Offboarding reaches every file the person can read (issue 10): files named exactly
``.env``, files no creation rule covers, the operator removing their own key, and a run that
fails. Real git, sops and age; each removal is checked by decrypting with the removed
person's own key, and each attack has a control showing it works without the fix."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import AgeKey, OpsRepo
from test_recipients_cli import can_read, ssh_host_key

ENV_FILE = "secrets/projects/hello-bot/.env"
LEDGER = ".opssecrets/ledger.json"


@pytest.fixture
def team(repo: OpsRepo) -> dict[str, AgeKey]:
    """dan (admin, the operator), host clarun, project hello-bot with member alice, whose
    secrets sit in a file named exactly .env (the name add-project suggests)."""
    alice = AgeKey.new()
    init = ("init", "--admin", "dan", "--age-key", repo.operator.recipient, "--host", "clarun", "--ssh-host-key", ssh_host_key())
    assert repo.ops(*init).code == 0
    assert repo.ops("add-project", "hello-bot").code == 0
    assert repo.ops("add-engineer", "alice", "--age-key", alice.recipient, "--project", "hello-bot").code == 0
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.invalid\n")
    repo.encrypt(ENV_FILE, "BOT_TOKEN=hello-0001\nDB_PASSWORD=db-0001\n")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "team")
    return {"dan": repo.operator, "alice": alice}


def dotenv_entry_put_back(new_text: str, old_text: str, recipient: str) -> str:
    """The attack on a dotenv sops file: the removed reader's ``sops_age__list_N`` lines from
    an old version (git history) appended to the new file under the next free index."""
    entries = re.finditer(r"^sops_age__list_(\d+)__map_recipient=(.+)$", old_text, re.M)
    old_index = next(m.group(1) for m in entries if m.group(2) == recipient)
    free = len(re.findall(r"^sops_age__list_\d+__map_recipient=", new_text, re.M))
    stolen = [
        line.replace(f"sops_age__list_{old_index}__", f"sops_age__list_{free}__", 1)
        for line in old_text.splitlines()
        if line.startswith(f"sops_age__list_{old_index}__")
    ]
    return new_text.rstrip("\n") + "\n" + "\n".join(stolen) + "\n"


def test_remove_engineer_reaches_a_file_named_exactly_env(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    alice = team["alice"]
    assert can_read(repo, ENV_FILE, alice)  # the control: before the removal she reads it
    old_text = (repo.root / ENV_FILE).read_text()
    access = repo.ops("access", ENV_FILE, "--json")
    assert [row["file"] for row in json.loads(access.out)["files"]] == [ENV_FILE]
    result = repo.ops("remove-engineer", "alice")
    assert result.code == 0, result
    assert ENV_FILE in result.out and "BOT_TOKEN" in result.err  # re-encrypted, and listed to re-issue
    assert not can_read(repo, ENV_FILE, alice)
    # a value set later, then her old wrapped data key from git history put back: the data
    # key was rotated, so it opens nothing
    assert repo.sops("set", "--value-stdin", ENV_FILE, '["BOT_TOKEN"]', stdin=b'"hello-0002"').returncode == 0
    (repo.root / ENV_FILE).write_text(dotenv_entry_put_back((repo.root / ENV_FILE).read_text(), old_text, alice.recipient))
    assert not can_read(repo, ENV_FILE, alice)
    assert can_read(repo, ENV_FILE, team["dan"])
    ledger = json.loads((repo.root / LEDGER).read_text())["files"][ENV_FILE]
    assert ledger["data_key_rotated_at"]
    assert {e["reader"] for e in ledger["keys"]["BOT_TOKEN"]["exposed_to"]} == {"alice"}


def test_without_rotation_the_env_history_attack_works(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    """The control for the test above: alice dropped by updatekeys alone (no new data key),
    her old entry put back, and she reads the value set after her removal."""
    alice = team["alice"]
    old_text = (repo.root / ENV_FILE).read_text()
    config = (repo.root / ".sops.yaml").read_text().replace("*alice", "*admin_dan", 1)
    (repo.root / ".sops.yaml").write_text(config)
    assert repo.sops("updatekeys", "-y", ENV_FILE).returncode == 0
    assert not can_read(repo, ENV_FILE, alice)
    assert repo.sops("set", "--value-stdin", ENV_FILE, '["BOT_TOKEN"]', stdin=b'"hello-0002"').returncode == 0
    (repo.root / ENV_FILE).write_text(dotenv_entry_put_back((repo.root / ENV_FILE).read_text(), old_text, alice.recipient))
    stolen = repo.decrypt(ENV_FILE, identity=alice)
    assert stolen.returncode == 0 and b"hello-0002" in stolen.stdout


def test_env_file_is_seen_by_grant_access_status_and_not_called_plaintext_by_check(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    bob = AgeKey.new()
    assert repo.ops("add-engineer", "bob", "--age-key", bob.recipient).code == 0
    granted = repo.ops("grant", "bob", "hello-bot")
    assert granted.code == 0 and ENV_FILE in granted.out, granted
    assert can_read(repo, ENV_FILE, bob)
    status = json.loads(repo.ops("status", "--json").out)["secrets"]
    assert {(row["file"], row["key"]) for row in status} >= {(ENV_FILE, "BOT_TOKEN"), (ENV_FILE, "DB_PASSWORD")}
    repo.git("add", "-A")
    check = repo.ops("check", "--all")
    assert check.code == 0, check
    assert ENV_FILE not in check.out + check.err
    # and a plaintext .env under the same rule is still caught
    repo.write("secrets/projects/hello-bot/sub/.env", "BOT_TOKEN=hello-0003\n")
    repo.git("add", "-A")
    caught = repo.ops("check", "--all")
    assert caught.code == 1 and "sub/.env" in caught.out and "no sops metadata" in caught.out, caught


def test_a_sops_file_whose_name_says_nothing_is_found_by_its_content(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    """A dotenv sops file named without any extension (encrypted with --input-type): sops
    itself would take it for binary; opssecrets reads its metadata and passes the type."""
    rel = "secrets/projects/hello-bot/bot-token"
    repo.write(rel, "BOT_TOKEN=hello-0004\n")
    assert repo.sops("encrypt", "--input-type", "dotenv", "--output-type", "dotenv", "-i", rel).returncode == 0
    assert repo.sops("decrypt", "--input-type", "dotenv", "--output-type", "dotenv", rel, identity=team["alice"]).returncode == 0
    assert repo.ops("remove-engineer", "alice").code == 0
    proc = repo.sops("decrypt", "--input-type", "dotenv", "--output-type", "dotenv", rel, identity=team["alice"])
    assert proc.returncode != 0
    assert repo.sops("decrypt", "--input-type", "dotenv", "--output-type", "dotenv", rel).returncode == 0


def encrypt_by_hand(repo: OpsRepo, rel: str, plaintext: str, *keys: AgeKey) -> None:
    """As someone does without any rule: sops --config /dev/null encrypt --age K1,K2 -i FILE."""
    repo.write(rel, plaintext)
    proc = repo.sops("--config", "/dev/null", "encrypt", "--age", ",".join(k.recipient for k in keys), "-i", rel)
    assert proc.returncode == 0, proc.stderr


def test_removal_reaches_a_file_no_rule_covers(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    alice, dan = team["alice"], team["dan"]
    rel = "legacy/old-vpn.yaml"
    encrypt_by_hand(repo, rel, "vpn-psk: psk-0001\n", dan, alice)
    assert can_read(repo, rel, alice)  # the control: her key is in the file's own metadata
    old_entry = next(e for e in yaml.safe_load((repo.root / rel).read_text())["sops"]["age"] if e["recipient"] == alice.recipient)
    table = repo.ops("access", rel)
    assert "no rule" in table.out, table
    result = repo.ops("remove-engineer", "alice")
    assert result.code == 0, result
    assert rel in result.out and "no rule covers it" in result.out
    assert not can_read(repo, rel, alice)
    assert can_read(repo, rel, dan)
    # her old entry put back after a later change opens nothing: the data key was rotated
    proc = repo.sops("--config", "/dev/null", "set", "--value-stdin", rel, '["vpn-psk"]', stdin=b'"psk-0002"')
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load((repo.root / rel).read_text())
    doc["sops"]["age"].append(old_entry)
    (repo.root / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not can_read(repo, rel, alice)
    exposed = json.loads((repo.root / LEDGER).read_text())["files"][rel]["keys"]["vpn-psk"]["exposed_to"]
    assert [e["reader"] for e in exposed] == ["alice"]


def test_a_file_no_rule_covers_keeps_a_removed_key_when_the_removal_stops_at_the_rules(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    """The control: a removal that only edits rules and re-wraps covered files (what
    updatekeys can reach) leaves the hand-encrypted file readable to her."""
    alice = team["alice"]
    rel = "legacy/old-vpn.yaml"
    encrypt_by_hand(repo, rel, "vpn-psk: psk-0001\n", team["dan"], alice)
    config = (repo.root / ".sops.yaml").read_text().replace("*alice", "*admin_dan", 1)
    (repo.root / ".sops.yaml").write_text(config)
    assert repo.sops("updatekeys", "-y", ENV_FILE).returncode == 0
    updatekeys_here = repo.sops("updatekeys", "-y", rel)
    assert updatekeys_here.returncode != 0  # no creation rule: updatekeys cannot reach it
    assert can_read(repo, rel, alice)


@pytest.fixture
def two_admins(repo: OpsRepo) -> dict[str, AgeKey]:
    """dan (the operator) and eve are admins; dan is also on a project as an engineer would be."""
    eve = AgeKey.new()
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    assert repo.ops("add-engineer", "eve", "--age-key", eve.recipient, "--admin").code == 0
    assert repo.ops("add-project", "hello-bot").code == 0
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.invalid\n")
    repo.encrypt(ENV_FILE, "BOT_TOKEN=hello-0001\n")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "two admins")
    return {"dan": repo.operator, "eve": eve}


def test_an_admin_can_remove_their_own_key(repo: OpsRepo, two_admins: dict[str, AgeKey]) -> None:
    dan, eve = two_admins["dan"], two_admins["eve"]
    entries = yaml.safe_load((repo.root / "secrets/secrets.yaml").read_text())["sops"]["age"]
    old_entry = next(e for e in entries if e["recipient"] == dan.recipient)
    result = repo.ops("remove-engineer", "dan")
    assert result.code == 0, result
    assert "&admin_dan" not in (repo.root / ".sops.yaml").read_text()
    for rel in ("secrets/secrets.yaml", ENV_FILE):
        assert not can_read(repo, rel, dan), rel
        assert can_read(repo, rel, eve), rel
    # his old entry from history, put back after eve changes a value, opens nothing
    rel = "secrets/secrets.yaml"
    assert repo.sops("set", "--value-stdin", rel, '["acme-email"]', stdin=b'"new@example.invalid"', identity=eve).returncode == 0
    doc = yaml.safe_load((repo.root / rel).read_text())
    doc["sops"]["age"].append(old_entry)
    (repo.root / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not can_read(repo, rel, dan)


def test_an_engineer_can_revoke_their_own_project(repo: OpsRepo) -> None:
    """dan (the operator) is an engineer on hello-bot; eve is the admin."""
    dan, eve = repo.operator, AgeKey.new()
    assert repo.ops("init", "--admin", "eve", "--age-key", eve.recipient).code == 0
    assert repo.ops("add-project", "hello-bot").code == 0
    assert repo.ops("add-engineer", "dan", "--age-key", dan.recipient, "--project", "hello-bot").code == 0
    repo.encrypt(ENV_FILE, "BOT_TOKEN=hello-0001\n")
    result = repo.ops("revoke", "dan", "hello-bot")
    assert result.code == 0, result
    assert not can_read(repo, ENV_FILE, dan)
    assert can_read(repo, ENV_FILE, eve)


def test_a_failed_removal_leaves_the_ledger_and_every_file_as_they_were(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    """A file alice reads that the operator cannot: the removal fails as a whole, and the
    ledger records no exposure for a removal that did not happen."""
    alice = team["alice"]
    assert repo.ops("share", "acme-email", "--to", "alice", "--outside-rule").code == 0  # a ledger exists already
    encrypt_by_hand(repo, "secrets/projects/hello-bot/alice-only.yaml", "note: n-0001\n", alice)
    before = repo.snapshot()
    result = repo.ops("remove-engineer", "alice")
    assert result.code == 3, result
    assert "no identity here can decrypt secrets/projects/hello-bot/alice-only.yaml" in result.err
    assert repo.snapshot() == before
    assert can_read(repo, ENV_FILE, alice)


def test_no_ledger_is_created_by_a_failed_removal(repo: OpsRepo, team: dict[str, AgeKey]) -> None:
    encrypt_by_hand(repo, "secrets/projects/hello-bot/alice-only.yaml", "note: n-0001\n", team["alice"])
    assert repo.ops("remove-engineer", "alice").code == 3
    assert not (repo.root / LEDGER).exists()


def test_rotation_in_a_shallow_clone_replaces_the_data_key_and_says_why(repo: OpsRepo, team: dict[str, AgeKey], tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True)
    full = OpsRepo(repo.root, repo.operator, repo.monkeypatch, repo.capsys)
    shallow = OpsRepo(clone, repo.operator, repo.monkeypatch, repo.capsys)
    rel = "secrets/secrets.yaml"

    def rotate(where: OpsRepo) -> str:
        result = where.ops("rotate", "acme-email", "--stdin", "--no-verify", stdin="ops2@example.invalid\n")
        assert result.code == 0, result
        assert where.sops("decrypt", "--extract", '["acme-email"]', rel).stdout == b"ops2@example.invalid"
        return result.out + result.err

    def dan_stanza(where: OpsRepo) -> str:
        entries = yaml.safe_load((where.root / rel).read_text())["sops"]["age"]
        return str(next(e["enc"] for e in entries if e["recipient"] == repo.operator.recipient))

    before = dan_stanza(full)
    said = rotate(full)
    assert "shallow" not in said and dan_stanza(full) == before  # full history: nobody was removed, key kept
    before = dan_stanza(shallow)
    said = rotate(shallow)
    assert "shallow clone" in said and "data key" in said, said
    assert dan_stanza(shallow) != before

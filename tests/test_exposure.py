"""`opssecrets exposure`: who outside today's recipients could know each current value, on
real git histories made at run time with real sops and age.

Each scenario is a thing teams do by hand; the splice tests put a removed reader's old
wrapped data key back into today's file and decrypt with their key, so the audit's "same
data key" is checked against what an attacker can actually do.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import AgeKey, OpsRepo

A = "secrets/app.yaml"


def token() -> str:
    return "tok-" + secrets.token_urlsafe(24)


def write_config(repo: OpsRepo, readers: dict[str, AgeKey], rules: dict[str, list[str]] | None = None) -> None:
    """A sops-nix style ``.sops.yaml``: named keys, one key group per rule."""
    rules = rules or {"^secrets/": list(readers)}
    lines = ["keys:"] + [f"  - &{name} {key.recipient}" for name, key in readers.items()] + ["creation_rules:"]
    for regex, names in rules.items():
        lines += [f"  - path_regex: {regex}", "    key_groups:", "      - age:"] + [f"          - *{n}" for n in names]
    repo.write(".sops.yaml", "\n".join(lines) + "\n")


def commit(repo: OpsRepo, message: str) -> str:
    repo.git("add", "-A")
    repo.git("commit", "-qm", message)
    return repo.git("rev-parse", "HEAD").strip()


def ok(proc: subprocess.CompletedProcess[bytes]) -> None:
    assert proc.returncode == 0, proc.stderr.decode()


def audit(repo: OpsRepo, *args: str) -> tuple[int, dict[str, Any]]:
    r = repo.ops("exposure", "--json", *args)
    assert r.code in (0, 1), r
    return r.code, json.loads(r.out)


def found(report: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {(e["file"], e["key"], e["reader"], e["how"]) for e in report["exposures"]}


@pytest.fixture
def people(repo: OpsRepo) -> dict[str, AgeKey]:
    return {"admin_dan": repo.operator, "alice": AgeKey.new()}


def hand_removal(repo: OpsRepo, people: dict[str, AgeKey], value: str) -> str:
    """alice reads A; later she is taken out of .sops.yaml and `sops updatekeys` run, no rotate."""
    write_config(repo, people)
    repo.encrypt(A, f"api_token: {value}\nport: 5432\n")
    first = commit(repo, "app secrets, dan and alice")
    write_config(repo, {"admin_dan": people["admin_dan"]})
    ok(repo.sops("updatekeys", "-y", A))
    commit(repo, "alice leaves (by hand)")
    return first


def splice(repo: OpsRepo, commit_id: str, reader: AgeKey) -> subprocess.CompletedProcess[bytes]:
    """Today's file with the reader's wrapped data key from ``commit_id`` put back; decrypted by them."""
    old = yaml.safe_load(repo.git("show", f"{commit_id}:{A}"))
    today = yaml.safe_load((repo.root / A).read_text())
    groups = old["sops"].get("key_groups") or [old["sops"]]
    stanza = next(entry for group in groups for entry in group["age"] if entry["recipient"] == reader.recipient)
    if today["sops"].get("key_groups"):
        today["sops"]["key_groups"][0]["age"].append(stanza)
    else:
        today["sops"]["age"].append(stanza)
    spliced = repo.write("attack/spliced.yaml", yaml.safe_dump(today))
    try:
        return repo.sops("decrypt", "--extract", '["api_token"]', str(spliced), identity=reader)
    finally:
        spliced.unlink()


def test_hand_removal_without_rotation_same_value_and_same_data_key(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    value = token()
    first = hand_removal(repo, people, value)
    code, report = audit(repo)
    assert code == 0
    assert {(A, "api_token", "alice", "same value"), (A, "api_token", "alice", "same data key")} <= found(report)
    # the short value is exposed too: it is compared with the same key of the same file
    assert (A, "port", "alice", "same value") in found(report)
    same_value = next(e for e in report["exposures"] if e["how"] == "same value" and e["key"] == "api_token")
    assert same_value["since_commit"] == first
    assert "alice" not in (repo.root / ".sops.yaml").read_text()  # the name came from .sops.yaml at that commit
    assert report["not_checked"] == [] and report["history_complete"] is True
    # the attack the audit describes works: alice's old wrapped key opens today's file
    attack = splice(repo, first, people["alice"])
    assert attack.returncode == 0 and attack.stdout.decode() == value

    r = repo.ops("exposure")
    assert r.code == 0
    lines = [line for line in r.out.splitlines() if "api_token" in line]
    assert any("same data key" in line and f"sops rotate -i {A}" in line and "opssecrets rotate api_token" in line for line in lines)
    assert all("alice" in line and "fix:" in line for line in r.out.splitlines())
    assert value not in r.out + r.err
    assert repo.ops("exposure", "--strict").code == 1


def test_data_key_rotation_without_new_value_is_same_value_only(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    value = token()
    first = hand_removal(repo, people, value)
    ok(repo.sops("rotate", "-i", A))
    commit(repo, "new data key")
    _, report = audit(repo)
    assert (A, "api_token", "alice", "same value") in found(report)
    assert not any(e["how"] == "same data key" for e in report["exposures"])
    assert all(e["fix"] == f"opssecrets rotate {e['key']} --file {A}" for e in report["exposures"])
    # and indeed alice's old wrapped key no longer opens today's file
    assert splice(repo, first, people["alice"]).returncode != 0


def test_new_value_without_data_key_rotation_is_same_data_key(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    first = hand_removal(repo, people, token())
    new_value = token()
    ok(repo.sops("set", "--value-stdin", A, '["api_token"]', stdin=json.dumps(new_value).encode()))
    commit(repo, "new token, same data key")
    _, report = audit(repo)
    exposures = {(e["key"], e["how"]) for e in report["exposures"] if e["reader"] == "alice"}
    assert ("api_token", "same data key") in exposures
    assert ("api_token", "same value") not in exposures
    # the new value, which alice never saw in any version, is open to her all the same
    attack = splice(repo, first, people["alice"])
    assert attack.returncode == 0 and attack.stdout.decode() == new_value


def test_rotating_both_leaves_nothing(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    hand_removal(repo, people, token())
    ok(repo.sops("rotate", "-i", A))
    for key, value in (("api_token", token()), ("port", "6543")):
        ok(repo.sops("set", "--value-stdin", A, f'["{key}"]', stdin=json.dumps(value).encode()))
    commit(repo, "rotated")
    code, report = audit(repo, "--strict")
    assert code == 0 and report["exposures"] == []


def test_value_copied_between_files(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    value = token()
    write_config(repo, people, {"^secrets/team/": ["admin_dan", "alice"], "^secrets/": ["admin_dan"]})
    repo.encrypt("secrets/team/bot.yaml", f"slack:\n  bot_token: {value}\n")
    repo.encrypt("secrets/core.yaml", f"bot: {value}\nother: {token()}\n")
    commit(repo, "one token in two files")
    _, report = audit(repo)
    assert found(report) == {("secrets/core.yaml", "bot", "alice", "same value")}
    (finding,) = report["exposures"]
    assert finding["found_in"] == "secrets/team/bot.yaml"


def test_value_in_plaintext_in_a_removed_file(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    value = token()
    write_config(repo, {"admin_dan": people["admin_dan"]})
    repo.write("config/app.env", f"TOKEN={value}\n")
    pasted = commit(repo, "oops")
    (repo.root / "config/app.env").unlink()
    repo.encrypt(A, f"api_token: {value}\n")
    commit(repo, "moved into sops")
    code, report = audit(repo, "--strict")
    assert code == 1
    assert report["exposures"] == [
        {
            "file": A,
            "key": "api_token",
            "reader": "repository readers",
            "how": "in plaintext",
            "since_commit": pasted,
            "found_in": "config/app.env",
            "recipient": None,
            "fix": f"opssecrets rotate api_token --file {A}",
        }
    ]


def test_version_the_operator_cannot_decrypt_is_listed_not_skipped(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    bob = AgeKey.new()
    write_config(repo, {"alice": people["alice"], "bob": bob})
    repo.write(A, f"api_token: {token()}\n")
    ok(repo.sops("encrypt", "-i", A, identity=people["alice"]))
    before = commit(repo, "alice and bob only")
    write_config(repo, {"admin_dan": people["admin_dan"]})
    ok(repo.sops("updatekeys", "-y", A, identity=people["alice"]))
    commit(repo, "dan takes over")
    _, report = audit(repo)
    assert {"file": A, "commit": before, "reason": "not encrypted for your identity"} in report["not_checked"]
    # alice's and bob's old stanzas wrap today's data key, but the operator cannot open them
    # to compare: the audit says so instead of calling the file clean
    r = repo.ops("exposure")
    assert f"not checked: {A}: 1 version(s): not encrypted for your identity" in r.err


def test_shallow_clone_is_reported_incomplete(repo: OpsRepo, people: dict[str, AgeKey], tmp_path: Path) -> None:
    hand_removal(repo, people, token())
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True)
    r = repo.ops("--repo", str(clone), "exposure", "--json")
    report = json.loads(r.out)
    assert report["history_complete"] is False
    assert any(n["file"] == "*" and "shallow clone" in n["reason"] for n in report["not_checked"])
    assert not any(e["how"] == "same value" for e in report["exposures"])  # the old version is not there to see
    assert repo.ops("--repo", str(clone), "exposure", "--strict").code == 1


def test_findings_join_status_until_the_value_changes(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    hand_removal(repo, people, token())
    ok(repo.sops("rotate", "-i", A))
    commit(repo, "new data key")
    assert repo.ops("status", "--strict").code == 0  # before the audit, status knows nothing
    repo.ops("exposure")
    rows = {row["key"]: row for row in json.loads(repo.ops("status", "--json").out)["secrets"]}
    assert rows["api_token"]["state"] == "exposed"
    assert repo.ops("status", "--strict").code == 1
    ok(repo.sops("set", "--value-stdin", A, '["api_token"]', stdin=json.dumps(token()).encode()))
    ok(repo.sops("set", "--value-stdin", A, '["port"]', stdin=b'"6543"'))
    rows = {row["key"]: row for row in json.loads(repo.ops("status", "--json").out)["secrets"]}
    assert rows["api_token"]["state"] != "exposed"


def test_not_a_sops_file_is_bad_input_and_changes_nothing(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    write_config(repo, people)
    repo.write("notes.txt", "hello\n")
    commit(repo, "notes")
    before = repo.snapshot()
    r = repo.ops("exposure", "notes.txt")
    assert r.code == 2 and "notes.txt" in r.err and "sops-encrypted" in r.err
    assert repo.snapshot() == before


def test_identity_reaches_age_through_a_pipe_from_the_keyring(repo: OpsRepo, people: dict[str, AgeKey], keyring_store: Path) -> None:
    """With the identity in the keyring (no variables, no key file), data keys are still opened."""
    hand_removal(repo, people, token())
    assert repo.ops("identity", "import", "--stdin", stdin=repo.operator.identity + "\n").code == 0
    _, report = audit(repo)
    assert (A, "api_token", "alice", "same data key") in found(report)


def test_copied_file_shares_its_data_key_and_rotate_replaces_it(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    """A sops file copied into a narrower folder keeps the data key; only the audit can see
    it (the copy's own history never had alice), and `rotate` then replaces the data key."""
    write_config(repo, people, {"^secrets/team/": ["admin_dan", "alice"], "^secrets/": ["admin_dan"]})
    repo.encrypt("secrets/team/app.yaml", f"api_token: {token()}\n")
    (repo.root / A).write_bytes((repo.root / "secrets/team/app.yaml").read_bytes())
    ok(repo.sops("updatekeys", "-y", A))
    commit(repo, "app secrets for core, copied from the team's")
    _, report = audit(repo)
    assert (A, "api_token", "alice", "same data key") in found(report)
    shared = next(e for e in report["exposures"] if e["how"] == "same data key")
    assert shared["found_in"] == "secrets/team/app.yaml" and f"sops rotate -i {A}" in shared["fix"]

    r = repo.ops("rotate", "api_token", "--file", A, "--stdin", stdin=token() + "\n")
    assert r.code == 0, r
    assert "exposure audit" in r.out + r.err
    # alice's wrapped key from the team file no longer opens the core file
    team = yaml.safe_load((repo.root / "secrets/team/app.yaml").read_text())
    core = yaml.safe_load((repo.root / A).read_text())
    stanza = next(e for e in team["sops"]["age"] if e["recipient"] == people["alice"].recipient)
    core["sops"]["age"].append(stanza)
    spliced = repo.write("attack/spliced.yaml", yaml.safe_dump(core))
    assert repo.sops("decrypt", str(spliced), identity=people["alice"]).returncode != 0


def test_without_an_identity_one_clear_line_exit_3(repo: OpsRepo, people: dict[str, AgeKey], monkeypatch: pytest.MonkeyPatch) -> None:
    hand_removal(repo, people, token())
    monkeypatch.delenv("SOPS_AGE_KEY")
    r = repo.ops("exposure")
    assert r.code == 3
    assert r.err.count("\n") == 1 and "identity import" in r.err


def test_same_data_key_stays_in_status_after_a_new_value_alone(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    """A new value under the shared data key is still open to alice: status keeps saying so
    until the data key changes too."""
    hand_removal(repo, people, token())
    repo.ops("exposure")
    ok(repo.sops("set", "--value-stdin", A, '["api_token"]', stdin=json.dumps(token()).encode()))
    rows = {row["key"]: row for row in json.loads(repo.ops("status", "--json").out)["secrets"]}
    assert rows["api_token"]["state"] == "exposed"
    ok(repo.sops("rotate", "-i", A))
    rows = {row["key"]: row for row in json.loads(repo.ops("status", "--json").out)["secrets"]}
    assert rows["api_token"]["state"] != "exposed"


def test_value_copied_into_an_uncommitted_file_for_another_reader(repo: OpsRepo, people: dict[str, AgeKey]) -> None:
    value = token()
    write_config(repo, people, {"^secrets/team/": ["admin_dan", "alice"], "^secrets/": ["admin_dan"]})
    repo.encrypt("secrets/core.yaml", f"bot: {value}\n")
    commit(repo, "core")
    repo.encrypt("secrets/team/bot.yaml", f"bot_token: {value}\n")  # not committed yet
    _, report = audit(repo)
    (finding,) = report["exposures"]
    assert (finding["file"], finding["reader"], finding["how"]) == ("secrets/core.yaml", "alice", "same value")
    assert (finding["found_in"], finding["since_commit"]) == ("secrets/team/bot.yaml", "working tree")


def test_identity_reaches_age_on_a_pipe_never_in_argv(repo: OpsRepo, people: dict[str, AgeKey], tmp_path: Path) -> None:
    """age is the real binary behind a wrapper that logs its argv: the identity goes in as
    /dev/fd/N (a pipe), and neither it nor any value is ever an argument."""
    import shutil

    value = token()
    hand_removal(repo, people, value)
    log = tmp_path / "age-argv.log"
    wrapper = tmp_path / "age-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
        f'for a in "$@"; do [ -p "$a" ] && echo pipe >> {log}; done\n'
        f'exec {shutil.which("age")} "$@"\n'
    )
    wrapper.chmod(0o755)
    r = repo.ops_proc("exposure", "--json", env={"OPSSECRETS_AGE": str(wrapper)})
    assert r.code == 0, r
    assert any(e["how"] == "same data key" for e in json.loads(r.out)["exposures"])
    argv = log.read_text()
    assert "-d -i /dev/fd/" in argv and "pipe" in argv.splitlines()
    assert repo.operator.identity not in argv and value not in argv

"""`opssecrets diff` and the `textconv` git diff driver: key-level changes, never a value (sops#16)."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys

import guard_support as tok
from conftest import AgeKey, OpsRepo

SECRETS = "secrets/secrets.yaml"


def committed_platform(repo: OpsRepo) -> dict[str, str]:
    values = {"keep": tok.rand(30), "change": tok.rand(30), "drop": tok.rand(30)}
    repo.write(
        ".sops.yaml",
        f"keys:\n  - &admin_dan {repo.operator.recipient}\n  - &host_clarun {AgeKey.new().recipient}\n"
        "creation_rules:\n  - path_regex: ^secrets/\n    age: [*admin_dan, *host_clarun]\n",
    )
    repo.encrypt(SECRETS, "".join(f"{k}: {v}\n" for k, v in values.items()))
    repo.git("add", "-A")
    repo.git("commit", "-qm", "platform")
    return values


def set_value(repo: OpsRepo, key: str, value: str) -> None:
    proc = repo.sops("set", "--value-stdin", SECRETS, f'["{key}"]', stdin=json.dumps(value).encode())
    assert proc.returncode == 0, proc.stderr.decode()


def change_everything(repo: OpsRepo, values: dict[str, str]) -> dict[str, str]:
    """Change one value, add one key, remove one, re-encrypt the rest, add a reader."""
    new = {"change": tok.rand(30), "added": tok.rand(30)}
    set_value(repo, "change", new["change"])
    set_value(repo, "added", new["added"])
    assert repo.sops("unset", SECRETS, '["drop"]').returncode == 0
    # a new data key: every value gets new ciphertext, "keep" keeps its value
    assert repo.sops("rotate", "-i", SECRETS).returncode == 0
    alice = AgeKey.new()
    assert repo.ops("add-engineer", "alice", "--age-key", alice.recipient, "--admin").code == 0
    new["alice"] = alice.recipient
    return new


def test_diff_lists_keys_and_recipients_and_decides_changed_by_decrypting(repo: OpsRepo) -> None:
    values = committed_platform(repo)
    new = change_everything(repo, values)
    r = repo.ops("diff", "--json")
    assert r.code == 0, r
    (entry,) = json.loads(r.out)["files"]
    assert entry["path"] == SECRETS and entry["status"] == "modified"
    assert entry["keys_added"] == ["added"]
    assert entry["keys_removed"] == ["drop"]
    assert entry["keys_changed"] == ["change"]  # "keep" has new ciphertext but the same value
    assert entry["keys_not_compared"] == [] and entry["note"] is None
    assert entry["recipients_added"] == [new["alice"]] and entry["recipients_removed"] == []

    text = repo.ops("diff", "HEAD", SECRETS)
    assert text.code == 0
    assert "~ key change (value changed)" in text.out and "+ key added" in text.out and "- key drop" in text.out
    assert "+ recipient admin_alice (" in text.out
    for value in [*values.values(), new["change"], new["added"]]:
        assert value not in text.out + text.err + r.out + r.err


def test_diff_without_identity_says_values_were_not_compared(repo: OpsRepo) -> None:
    values = committed_platform(repo)
    change_everything(repo, values)
    repo.monkeypatch.delenv("SOPS_AGE_KEY")
    r = repo.ops("diff", "--json")
    assert r.code == 0, r
    (entry,) = json.loads(r.out)["files"]
    assert entry["keys_changed"] == []
    assert sorted(entry["keys_not_compared"]) == ["change", "keep"]
    assert entry["note"].startswith("values could not be compared")
    assert entry["keys_added"] == ["added"] and entry["keys_removed"] == ["drop"]


def test_diff_of_a_ref_that_does_not_exist_is_bad_input(repo: OpsRepo) -> None:
    committed_platform(repo)
    r = repo.ops("diff", "nosuchbranch", SECRETS)
    assert r.code == 2 and r.out == ""
    r = repo.ops("diff", "nosuchbranch")
    assert r.code == 2 and "nosuchbranch: neither a commit nor a file" in r.err


def test_git_diff_with_the_textconv_driver_shows_keys_never_values(repo: OpsRepo) -> None:
    values = committed_platform(repo)
    repo.write(".gitattributes", "secrets/**/*.yaml diff=sopsdiffer\nsecrets/*.yaml diff=sopsdiffer\n")
    repo.git("config", "diff.sopsdiffer.textconv", f"{sys.executable} -m opssecrets textconv")
    new = change_everything(repo, values)
    env_proc = subprocess.run(
        ["git", "diff", "--no-color", "HEAD", "--", SECRETS], cwd=repo.root, capture_output=True, text=True, check=True
    )
    out = env_proc.stdout
    changed = {line for line in out.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))}
    names = {(line[0], line[1:].strip().split(":")[0].split(" (")[0]) for line in changed}
    assert names == {("-", "change"), ("+", "change"), ("+", "added"), ("-", "drop"), ("+", "admin_alice")}
    assert not any("keep" in line for line in changed)  # same value, different ciphertext: no change shown
    for value in [*values.values(), new["change"], new["added"]]:
        assert value not in out
        assert hashlib.sha256(value.encode()).hexdigest()[:16] not in out  # keyed, not a plain hash
    assert "ENC[" not in out
    key_file = repo.root / ".git" / "opssecrets" / "fingerprint.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    repo.git("add", "-A")
    repo.git("commit", "-qm", "rotate")
    log = subprocess.run(["git", "log", "-p", "--no-color", "-1", "--", SECRETS], cwd=repo.root, capture_output=True, text=True, check=True)
    assert "+  added: hmac-sha256:" in log.stdout and new["added"] not in log.stdout


def test_diff_of_a_binary_sops_file(repo: OpsRepo) -> None:
    committed_platform(repo)
    repo.encrypt("secrets/runner.token", tok.rand(40))
    repo.git("add", "-A")
    repo.git("commit", "-qm", "runner token")
    repo.encrypt("secrets/runner.token", tok.rand(40))
    r = repo.ops("diff", "--json", "secrets/runner.token")
    assert r.code == 0, r
    (entry,) = json.loads(r.out)["files"]
    assert (entry["path"], entry["keys_changed"], entry["keys_added"]) == ("secrets/runner.token", ["data"], [])

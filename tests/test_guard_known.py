"""--known: files holding the current value of a repository secret, never printing it."""

from __future__ import annotations

import guard_support as tok
from conftest import AgeKey, OpsRepo
from guard_support import assert_redacted, findings


def test_known_values_found_in_any_format_without_showing_them(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {repo.operator.recipient}\n")
    password = "correct horse " + tok.rand(6)  # not random-looking: only --known can catch it
    repo.encrypt("secrets/db.yaml", f"db:\n  password: {password}\n  port: 5432\n")
    repo.write("docker-compose.yml", f"services:\n  db:\n    environment:\n      - PGPASS='{password}'\n")
    repo.write("notes.md", "port 5432 is fine\n")
    repo.git("add", ".")
    assert findings(repo, "--staged") == []
    result = repo.ops("check", "--staged", "--known", "--json")
    assert result.code == 1, result
    assert password not in result.out + result.err
    assert_redacted(password, result.out + result.err)
    found = findings(repo, "--staged", "--known")
    assert [(f["path"], f["line"], f["rule"]) for f in found] == [("docker-compose.yml", 4, "known-value")]
    assert "db/password" in str(found[0]["message"])
    assert "secrets/db.yaml" in str(found[0]["message"])
    # nothing plaintext was written anywhere in the repository
    for path in repo.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.name != "docker-compose.yml":
            assert password.encode() not in path.read_bytes(), path


def test_known_without_an_identity_exits_3(repo: OpsRepo) -> None:
    other = AgeKey.new()
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {other.recipient}\n")
    proc = repo.sops("encrypt", "-i", str(repo.write("secrets/x.yaml", f"k: {tok.rand(20)}\n").relative_to(repo.root)))
    assert proc.returncode == 0, proc.stderr
    repo.write("a.txt", "x\n")
    result = repo.ops("check", "--known", "a.txt")
    assert result.code == 3, result
    assert "--known needs an identity" in result.err

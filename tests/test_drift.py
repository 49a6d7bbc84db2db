"""One drift: ``access``, ``reencrypt --check`` and the guard (``check``) give the same answer
for a file whose recipients sit in key groups, because sops needs a key from every group."""

from __future__ import annotations

import json
import secrets

import pytest
from conftest import AgeKey, OpsRepo
from guard_support import findings

FILE = "secrets/app.yaml"


def _key_groups(*groups: list[str]) -> str:
    lines = ["creation_rules:", "  - path_regex: ^secrets/", "    key_groups:"]
    for group in groups:
        lines += ["      - age:", *(f"          - {recipient}" for recipient in group)]
    return "\n".join(lines) + "\n"


def _access_differs(repo: OpsRepo) -> bool:
    result = repo.ops("access", "--json")
    assert result.code == 0, result
    (row,) = json.loads(result.out)["files"]
    return bool(row["differs"])


def test_the_same_recipients_split_differently_across_key_groups_is_drift_for_every_command(
    repo: OpsRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    dan, bob, host = repo.operator, AgeKey.new(), AgeKey.new()
    repo.write(".sops.yaml", _key_groups([dan.recipient, bob.recipient], [host.recipient]))
    repo.encrypt(FILE, f"token: {secrets.token_hex(16)}\n")
    assert not _access_differs(repo)
    assert repo.ops("reencrypt", "--check").code == 0
    assert findings(repo, FILE) == []

    # the same three recipients, but bob moves to the host's group: by the rule dan and bob
    # together can decrypt, by the file they cannot (both hold the first group's share only)
    repo.write(".sops.yaml", _key_groups([dan.recipient], [bob.recipient, host.recipient]))
    assert _access_differs(repo)
    assert repo.ops("reencrypt", "--check").code == 1
    found = findings(repo, FILE)
    assert [(f["path"], f["rule"]) for f in found] == [(FILE, "sops-recipient-drift")]
    message = str(found[0]["message"])
    assert "key groups" in message and "opssecrets reencrypt" in message

    # the fix the message names brings all three back in line (sops needs a key of each group)
    monkeypatch.setenv("SOPS_AGE_KEY", f"{dan.identity}\n{host.identity}")
    assert repo.ops("reencrypt").code == 0
    assert not _access_differs(repo)
    assert repo.ops("reencrypt", "--check").code == 0
    assert findings(repo, FILE) == []

"""Files a .sops.yaml rule covers: real sops files, then tampered with."""

from __future__ import annotations

import json
import re

import guard_support as tok
import pytest
from conftest import AgeKey, OpsRepo
from guard_support import findings


def sops_config(repo: OpsRepo, *recipients: str, extra: str = "") -> None:
    keys = ",".join(recipients or (repo.operator.recipient,))
    repo.write(".sops.yaml", f"creation_rules:\n{extra}  - path_regex: ^secrets/[^/]+\\.(yaml|json|env|ini)$\n    age: {keys}\n")


def summary(found: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(f["path"], f["line"], f["rule"]) for f in found]


FORMATS = {
    "secrets/app.yaml": ("db:\n  password: {v}\n  user_unencrypted: admin\n", "db:\n  password: {v}\n  extra: pasted-in-plaintext\n"),
    "secrets/app.json": ('{{"password": "{v}", "user_unencrypted": "admin"}}', None),
    "secrets/app.env": ("PASSWORD={v}\nUSER_unencrypted=admin\n", None),
    "secrets/app.ini": ("[db]\npassword = {v}\nuser_unencrypted = admin\n", None),
}


@pytest.mark.parametrize("rel", list(FORMATS))
def test_real_sops_files_are_clean_and_a_pasted_value_is_found(repo: OpsRepo, rel: str) -> None:
    sops_config(repo)
    plain, _ = FORMATS[rel]
    path = repo.encrypt(rel, plain.format(v=tok.rand(24)))
    assert findings(repo, rel) == []
    # paste a plaintext value into the encrypted file, as a hurried edit would
    text = path.read_text()
    pasted = "pasted-" + tok.rand(8)
    if rel.endswith(".yaml"):
        text = text.replace("db:\n", f"db:\n    extra: {pasted}\n", 1)
        line = 2
    elif rel.endswith(".json"):
        text = text.replace("{\n", f'{{\n\t"extra": "{pasted}",\n', 1)
        line = 2
    elif rel.endswith(".env"):
        text = f"EXTRA={pasted}\n" + text
        line = 1
    else:
        text = text.replace("[db]\n", f"[db]\nextra = {pasted}\n", 1)
        line = 2
    path.write_text(text)
    found = findings(repo, rel)
    assert summary(found) == [(rel, line, "sops-plaintext-value")]
    assert "extra" in str(found[0]["message"]).lower()
    assert pasted[7:] not in json.dumps(found)


def test_plaintext_file_under_a_rule(repo: OpsRepo) -> None:
    sops_config(repo)
    repo.write("secrets/new.yaml", "token: x\n")
    repo.write("secrets/empty.env", "")
    (repo.root / "secrets" / "blob.json").write_bytes(b"\x00\x01binary")
    repo.write("docs/secrets.yaml", "not: covered\n")
    found = findings(repo, "secrets/new.yaml", "secrets/empty.env", "secrets/blob.json", "docs/secrets.yaml")
    assert summary(found) == [
        ("secrets/blob.json", None, "sops-unencrypted"),
        ("secrets/empty.env", None, "sops-unencrypted"),
        ("secrets/new.yaml", None, "sops-unencrypted"),
    ]
    assert "sops encrypt -i secrets/new.yaml" in str(found[2]["message"])
    assert "rule 1" in str(found[2]["message"])


def test_missing_mac(repo: OpsRepo) -> None:
    sops_config(repo)
    path = repo.encrypt("secrets/a.yaml", f"k: {tok.rand(20)}\n")
    path.write_text(re.sub(r"\n    mac: ENC\[[^\n]*", "", path.read_text()))
    assert summary(findings(repo, "secrets/a.yaml")) == [("secrets/a.yaml", None, "sops-missing-mac")]


def test_file_policy_regex_and_suffixes(repo: OpsRepo) -> None:
    sops_config(repo)
    # this file's own policy: only keys matching ^(data|stringData)$ are encrypted
    repo.write(".sops.yaml", repo.root.joinpath(".sops.yaml").read_text() + "    encrypted_regex: ^(data|stringData)$\n")
    path = repo.encrypt("secrets/k8s.yaml", f"kind: Secret\nmetadata:\n  name: x\ndata:\n  token: {tok.rand(20)}\n")
    assert "kind: Secret" in path.read_text()
    assert findings(repo, "secrets/k8s.yaml") == []
    # outside the policy's keys a plaintext value is what sops itself writes: fine
    path.write_text(path.read_text().replace("metadata:\n", "metadata:\n    pasted: plain\n", 1))
    assert findings(repo, "secrets/k8s.yaml") == []
    path.write_text(path.read_text().replace("\ndata:\n", "\ndata:\n    pasted: plain\n", 1))
    assert summary(findings(repo, "secrets/k8s.yaml")) == [("secrets/k8s.yaml", 6, "sops-plaintext-value")]


def test_recipient_drift_says_reencrypt(repo: OpsRepo) -> None:
    sops_config(repo)
    repo.encrypt("secrets/a.yaml", f"k: {tok.rand(20)}\n")
    assert findings(repo, "secrets/a.yaml") == []
    newcomer = AgeKey.new()
    sops_config(repo, repo.operator.recipient, newcomer.recipient)
    found = findings(repo, "secrets/a.yaml")
    assert summary(found) == [("secrets/a.yaml", None, "sops-recipient-drift")]
    assert "opssecrets reencrypt" in str(found[0]["message"])
    assert newcomer.recipient[:12] in str(found[0]["message"])


def test_broken_sops_yaml_is_one_finding_and_the_rest_is_still_checked(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", "creation_rules:\n  - path_regex: [unclosed\n    age: x\n")
    repo.write("notes.txt", tok.slack_bot() + "\n")
    found = findings(repo, ".sops.yaml", "notes.txt")
    assert summary(found) == [(".sops.yaml", 3, "sops-config-invalid"), ("notes.txt", 1, "slack-bot-token")]
    # also when .sops.yaml itself is not among the paths
    found = findings(repo, "notes.txt")
    assert summary(found) == [(".sops.yaml", 3, "sops-config-invalid"), ("notes.txt", 1, "slack-bot-token")]


def test_catch_all_rule_does_not_flag_source_files(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: modules/vpn/*\n    age: {repo.operator.recipient}\n")
    repo.write("modules/vpn/default.nix", "{ ... }: { }\n")
    repo.write("modules/vpn/README.md", "# vpn\n")
    repo.write("modules/vpn/keys.yaml", "private: plain\n")
    found = findings(repo, "modules/vpn/default.nix", "modules/vpn/README.md", "modules/vpn/keys.yaml")
    assert summary(found) == [("modules/vpn/keys.yaml", None, "sops-unencrypted")]


def test_encrypted_suffix_with_mac_only_encrypted(repo: OpsRepo) -> None:
    repo.write(
        ".sops.yaml",
        f"creation_rules:\n  - path_regex: ^secrets/\n    age: {repo.operator.recipient}\n"
        "    encrypted_suffix: _secret\n    mac_only_encrypted: true\n",
    )
    path = repo.encrypt("secrets/app.yaml", f"host: db.internal\nport: 5432\ndb_secret: {tok.rand(20)}\n")
    text = path.read_text()
    assert "host: db.internal" in text
    assert "mac_only_encrypted: true" in text
    assert findings(repo, "secrets/app.yaml") == []
    path.write_text(text.replace("port: 5432\n", "port: 5432\napi_secret: pasted\n", 1))
    found = findings(repo, "secrets/app.yaml")
    assert [(f["line"], f["rule"]) for f in found] == [(3, "sops-plaintext-value")]
    assert "api_secret" in str(found[0]["message"])


def test_multi_document_yaml(repo: OpsRepo) -> None:
    sops_config(repo)
    path = repo.encrypt("secrets/multi.yaml", f"a: {tok.rand(20)}\n---\nb: {tok.rand(20)}\n")
    assert path.read_text().count("\nsops:\n") == 2
    assert findings(repo, "secrets/multi.yaml") == []
    path.write_text(path.read_text().replace("\n---\n", "\n---\npasted: plain\n", 1))
    found = findings(repo, "secrets/multi.yaml")
    assert [f["rule"] for f in found] == ["sops-plaintext-value"]
    assert "pasted" in str(found[0]["message"])


def test_ini_value_after_a_colon_is_found(repo: OpsRepo) -> None:
    """INI readers (configparser, sops' go-ini) take ``key: value`` as ``key = value``: so does the guard."""
    sops_config(repo)
    rel = "secrets/app.ini"
    path = repo.encrypt(rel, FORMATS[rel][0].format(v=tok.rand(24)))
    pasted = "pasted-" + tok.rand(8)
    path.write_text(path.read_text().replace("[db]\n", f"[db]\nextra: {pasted}\n", 1))
    found = findings(repo, rel)
    assert summary(found) == [(rel, 2, "sops-plaintext-value")]
    assert pasted[7:] not in json.dumps(found)

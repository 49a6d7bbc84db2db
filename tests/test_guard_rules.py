"""The leak rules: each secret kind is found, look-alikes and sops artefacts are not."""

from __future__ import annotations

import json
from collections.abc import Callable

import guard_support as tok
import pytest
from conftest import OpsRepo
from guard_support import assert_redacted, findings


def rules_in(repo: OpsRepo, rel: str, text: str) -> list[str]:
    repo.write(rel, text)
    return [str(f["rule"]) for f in findings(repo, rel)]


KINDS: list[tuple[str, Callable[[], str]]] = [
    ("slack-bot-token", tok.slack_bot),
    ("slack-user-token", tok.slack_user),
    ("slack-app-token", tok.slack_app),
    ("slack-config-access-token", tok.slack_config_access),
    ("slack-config-refresh-token", tok.slack_config_refresh),
    ("slack-webhook-url", tok.slack_webhook),
    ("matrix-access-token", tok.matrix_token),
    ("age-identity", tok.age_identity),
    ("github-token", tok.github_classic),
    ("github-fine-grained-token", tok.github_fine_grained),
    ("gitlab-token", tok.gitlab),
    ("aws-access-key", tok.aws_key),
]


@pytest.mark.parametrize(("rule", "make"), KINDS, ids=[k for k, _ in KINDS])
def test_each_token_kind_is_found_with_line_and_redacted(repo: OpsRepo, rule: str, make: Callable[[], str]) -> None:
    secret = make()
    repo.write("notes/deploy.txt", f"first line\nsee below\n  value {secret} trailing\n")
    result = repo.ops("check", "notes/deploy.txt")
    assert result.code == 1, result
    lines = result.out.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith(f"notes/deploy.txt:3: {rule}: ")
    assert_redacted(secret, result.out + result.err)


def test_a_known_token_assigned_to_a_secret_name_is_one_finding(repo: OpsRepo) -> None:
    repo.write("bridge.env", f"SLACK_APP_TOKEN={tok.slack_app()}\nSLACK_BOT_TOKEN='{tok.slack_bot()}'\n")
    found = findings(repo, "bridge.env")
    assert [(f["line"], f["rule"]) for f in found] == [(1, "slack-app-token"), (2, "slack-bot-token")]


def test_private_key_blocks(repo: OpsRepo) -> None:
    text = "x\n" + tok.pem_block("RSA ") + tok.pem_block("EC ") + tok.pem_block("") + tok.openssh_block()
    text += "-----BEGIN PGP " + "PRIVATE KEY BLOCK-----\n\n" + tok.rand(300) + "\n-----END PGP PRIVATE KEY BLOCK-----\n"
    repo.write("keys.txt", text)
    found = findings(repo, "keys.txt")
    assert [f["rule"] for f in found] == ["private-key"] * 3 + ["openssh-private-key", "private-key"]
    assert next(f["line"] for f in found) == 2


def test_documented_key_headers_without_a_body_are_not_keys(repo: OpsRepo) -> None:
    text = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----\n"
    text += "Put your key between -----BEGIN RSA " + "PRIVATE KEY----- and the END line.\n"
    assert rules_in(repo, "README.md", text) == []


def test_matrix_checksum_rejects_random_text(repo: OpsRepo) -> None:
    bad = [tok.matrix_token(valid=False) for _ in range(20)]
    assert rules_in(repo, "m.txt", "\n".join(bad)) == []


def test_age_identity_checksum_rejects_typos(repo: OpsRepo) -> None:
    assert rules_in(repo, "a.txt", tok.age_identity(valid=False)) == []


def test_placeholders_are_not_findings(repo: OpsRepo) -> None:
    text = """
SLACK_BOT_TOKEN=xoxb-your-token-here
SLACK_APP_TOKEN=xapp-...
SLACK_USER=xoxp-<your token>
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
webhook: https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/XXXXXXXXXXXXXXXXXXXXXXXX
api_token: "<changeme>"
password: ${DB_PASSWORD}
registration_token: "{{ registration_token }}"
client_secret: your-client-secret-goes-here
"""
    assert rules_in(repo, "example.env", text) == []


def test_generic_rule_names_and_entropy(repo: OpsRepo) -> None:
    value = tok.generic_value()
    text = f"""
api_token: "{value}"
registration_token = '{tok.rand(32)}'
"password": "{tok.rand(20)}",
MATRIX_AS_TOKEN={tok.rand(64, "0123456789abcdef")}
password: hunter2
secret_name: slack_bot_token_for_alerts
tokenFile = config.sops.secrets."slack/bot_token".path;
token_path: /run/secrets/slack_bot_token
password = getpass.getpass()
if token == "abc": pass
some_token: slack_bot_token_production_value
PROJECT_SECRETS = f"secrets/projects/{{PROJECT}}/secrets.yaml"
SECRETS = "matrix-registration-token: reg-0001\\nacme-email: ops@example.invalid\\n"
forgejo-db-password: old-password-1
secret_store: secrets/prod/matrix.yaml
"""
    repo.write("conf/app.yaml", text)
    found = findings(repo, "conf/app.yaml")
    assert [(f["line"], f["rule"]) for f in found] == [
        (2, "generic-secret"),
        (3, "generic-secret"),
        (4, "generic-secret"),
        (5, "generic-secret"),
    ]
    assert_redacted(value, json.dumps(found))


NEVER_FINDINGS = {
    "flake.lock": """{
  "nodes": {
    "nixpkgs": {
      "locked": {
        "lastModified": 1700000000,
        "narHash": "sha256-%(b64)s=",
        "owner": "NixOS",
        "repo": "nixpkgs",
        "rev": "%(hex40)s",
        "type": "github"
      }
    }
  },
  "root": "root",
  "version": 7
}
""",
    "hosts/known_hosts": "git.clarun.xyz ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%(b64)s\n",
    "keys/alice.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%(b64)s alice@laptop\n",
    "modules/matrix.nix": """{ config, ... }: {
  services.foo.package = "/nix/store/%(nixhash)s-foo-1.0";
  services.foo.tokenFile = config.sops.secrets."matrix/token".path;
  sops.secrets."matrix/token" = { owner = "foo"; };
  users.users.x.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%(b64)s x" ];
  id = "%(uuid)s";
  commit = "%(hex40)s";
  age.recipient = "%(recipient)s";
}
""",
}


def test_never_findings(repo: OpsRepo) -> None:
    import secrets
    import uuid

    from opssecrets.keys import generate_identity, recipient_for_identity

    values = {
        "b64": tok.rand(43),
        "hex40": secrets.token_hex(20),
        "nixhash": tok.rand(32, "0123456789abcdfghijklmnpqrsvwxyz"),
        "uuid": str(uuid.uuid4()),
        "recipient": recipient_for_identity(generate_identity()),
    }
    for rel, text in NEVER_FINDINGS.items():
        repo.write(rel, text % values)
    assert findings(repo, *NEVER_FINDINGS) == []


def test_sops_files_in_every_format_are_clean(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {repo.operator.recipient}\n")
    token = tok.slack_bot()
    repo.encrypt("secrets/slack.yaml", f"slack:\n  bot_token: {token}\n  api_token: {tok.rand(40)}\n# a comment\n")
    repo.encrypt("secrets/app.json", json.dumps({"password": tok.rand(30), "nested": {"k": [1, "two"]}}))
    repo.encrypt("secrets/app.env", f"API_TOKEN={tok.rand(40)}\nPASSWORD={tok.rand(24)}\n")
    repo.encrypt("secrets/app.ini", f"[main]\ntoken = {tok.rand(40)}\n")
    repo.encrypt("secrets/raw.bin", tok.rand(64))
    assert findings(repo, ".sops.yaml", "secrets") == []


def test_allow_comment(repo: OpsRepo) -> None:
    token = tok.slack_bot()
    text = f"a: {token}  # opssecrets: allow (test fixture)\nb: {tok.slack_bot()}\n"
    repo.write("x.yaml", text)
    found = findings(repo, "x.yaml")
    assert [(f["line"], f["rule"]) for f in found] == [(2, "slack-bot-token")]


def test_policy_allowlist_paths_and_fingerprints_and_own_rules(repo: OpsRepo) -> None:
    repo.write("fixtures/a.txt", tok.github_classic())
    repo.write("b.txt", tok.gitlab())
    repo.write("c.txt", f"internal: corp_{tok.rand(24)}\n")
    first = findings(repo, "fixtures/a.txt", "b.txt", "c.txt")
    assert [f["path"] for f in first] == ["b.txt", "fixtures/a.txt"]
    fingerprint = str(first[0]["message"]).rsplit("fingerprint ", 1)[1].rstrip(")")
    repo.write(
        "policies/leaks.toml",
        f"""
[[rules]]
id = "corp-token"
description = "Corp internal token"
keywords = ["corp_"]
regex = 'corp_[A-Za-z0-9]{{24}}'

[allowlist]
paths = ["fixtures/*"]
fingerprints = ["{fingerprint}"]
""",
    )
    second = findings(repo, "fixtures/a.txt", "b.txt", "c.txt")
    assert [(f["path"], f["rule"]) for f in second] == [("c.txt", "corp-token")]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[[rules]\nid = 'x'\n", 1, "not valid TOML"),
        ('version = 1\n\n[[rules]]\nid = "broken"\nkeywords = ["b"]\nregex = \'(unclosed\'\n', 4, "regex does not compile"),
        ('[allowlist]\nfingerprints = ["nope"]\n', 2, "fingerprint"),
    ],
)
def test_malformed_policy_names_file_and_line(repo: OpsRepo, text: str, line: int, fragment: str) -> None:
    repo.write("policies/leaks.toml", text)
    repo.write("a.txt", "nothing\n")
    before = repo.snapshot()
    result = repo.ops("check", "a.txt")
    assert result.code == 2, result
    assert f"policies/leaks.toml:{line}:" in result.err
    assert fragment in result.err
    assert repo.snapshot() == before


def test_invalid_utf8_and_binary(repo: OpsRepo) -> None:
    token = tok.slack_bot()
    (repo.root / "latin1.txt").write_bytes(b"caf\xe9 \xff\xfe token " + token.encode() + b"\n")
    (repo.root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0" + token.encode())
    found = findings(repo, "latin1.txt", "image.png")
    assert [(f["path"], f["rule"], f["line"]) for f in found] == [("latin1.txt", "slack-bot-token", 1)]


def test_long_line_and_large_file(repo: OpsRepo) -> None:
    token = tok.slack_bot()
    long_line = "token=" + "a" * 100_000 + " " + "tokentoken" * 5_000 + " " + token + "\n"
    repo.write("long.txt", long_line)
    big = repo.root / "big.log"
    with big.open("wb") as handle:
        chunk = b"2026-01-01 INFO request ok token=short path=/x password: hunter2\n" * 16384
        for _ in range(50):
            handle.write(chunk)
        handle.write(f"leaked {tok.github_classic()}\napi_token: {tok.rand(40)}\n".encode())
    assert big.stat().st_size > 50_000_000
    found = findings(repo, "long.txt", "big.log")
    assert [(f["path"], f["line"], f["rule"]) for f in found] == [
        ("big.log", 50 * 16384 + 1, "github-token"),
        ("big.log", 50 * 16384 + 2, "generic-secret"),
        ("long.txt", 1, "slack-bot-token"),
    ]

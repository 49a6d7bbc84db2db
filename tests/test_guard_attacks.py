"""A branch cannot loosen its own review: each attack is built in a real git repository as an
attacker would push it, and CI's ``check --all --base main`` must fail on it."""

from __future__ import annotations

import json
import os

import guard_support as tok
from conftest import AgeKey, OpsRepo

CONFIG = """\
keys:
  - &admin_dan {dan}
  - &host_clarun {host}
creation_rules:
  - path_regex: ^secrets/
    age: [*admin_dan, *host_clarun]
"""


def main_branch(repo: OpsRepo, extra: dict[str, str] | None = None) -> dict[str, AgeKey]:
    """The reviewed state on ``main``, then an ``attack`` branch checked out from it."""
    keys = {"dan": repo.operator, "host": AgeKey.new()}
    repo.write(".sops.yaml", CONFIG.format(**{k: v.recipient for k, v in keys.items()}))
    repo.write("app/README.md", "the app\n")
    for rel, text in (extra or {}).items():
        repo.write(rel, text)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "base")
    repo.git("branch", "-M", "main")
    repo.git("checkout", "-q", "-b", "attack")
    return keys


def push(repo: OpsRepo) -> None:
    repo.git("add", "-A")
    repo.git("commit", "-qm", "attack")


def ci(repo: OpsRepo) -> tuple[int, list[dict[str, object]]]:
    result = repo.ops("check", "--all", "--base", "main", "--json")
    assert result.code in (0, 1), result
    return result.code, list(json.loads(result.out)["findings"])


def rules_of(found: list[dict[str, object]]) -> set[object]:
    return {f["rule"] for f in found}


def test_a_branch_policy_that_turns_off_review_and_allowlists_its_leak_is_not_used(repo: OpsRepo) -> None:
    main_branch(repo)
    mallory = AgeKey.new()
    slack = tok.slack_bot()
    repo.write("policies/leaks.toml", '[review]\nrecipients = false\n\n[allowlist]\npaths = ["app/*"]\n')
    text = (repo.root / ".sops.yaml").read_text()
    repo.write(".sops.yaml", text.replace("*host_clarun]", f"*host_clarun, {mallory.recipient}]"))
    repo.write("app/config.env", f"SLACK_BOT_TOKEN={slack}\n")
    push(repo)
    code, found = ci(repo)
    assert code == 1
    assert {"recipient-added", "slack-bot-token", "policy-changed"} <= rules_of(found)
    messages = {str(f["message"]) for f in found if f["rule"] == "policy-changed"}
    assert any("turns off the recipient review" in m for m in messages), messages
    assert any("allowlists the paths 'app/*'" in m for m in messages), messages
    assert all(f["path"] == "policies/leaks.toml" for f in found if f["rule"] == "policy-changed")
    tok.assert_redacted(slack, json.dumps(found))


def test_the_reviewed_policy_on_the_base_still_decides(repo: OpsRepo) -> None:
    # what main agreed to (review off) applies; the branch adds a recipient and changes no policy
    main_branch(repo, {"policies/leaks.toml": "[review]\nrecipients = false\n"})
    bob = AgeKey.new()
    assert repo.ops("add-engineer", "bob", "--age-key", bob.recipient, "--admin").code == 0
    push(repo)
    result = repo.ops("check", "--all", "--base", "main")
    assert result.code == 0, result
    assert "opssecrets: note: bob" in result.err and "new recipient since main" in result.err


def test_a_symlinked_sops_yaml_is_a_finding_and_every_command_refuses_it(repo: OpsRepo) -> None:
    keys = main_branch(repo)
    repo.encrypt("secrets/a.yaml", "token: hello-there-1234\n")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "a secret")
    repo.git("branch", "-f", "main")
    mallory = AgeKey.new()
    text = (repo.root / ".sops.yaml").read_text()
    repo.write("docs/sops.yaml", text.replace("*host_clarun]", f"*host_clarun, {mallory.recipient}]"))
    (repo.root / ".sops.yaml").unlink()
    os.symlink("docs/sops.yaml", repo.root / ".sops.yaml")
    push(repo)
    code, found = ci(repo)
    assert code == 1
    assert "sops-config-symlink" in rules_of(found), found
    before = repo.snapshot()
    for args in (
        ("reencrypt",),
        ("reencrypt", "--check"),
        ("recipients",),
        ("access",),
        ("lint",),
        ("status",),
        ("add-engineer", "eve", "--age-key", AgeKey.new().recipient),
        ("remove-host", "clarun"),
        ("rotate", "token", "--generate", "--no-verify"),
        ("init", "--admin", "dan", "--age-key", keys["dan"].recipient),
    ):
        result = repo.ops(*args)
        assert result.code == 2, (args, result)
        assert "symlink" in result.err and len(result.err.strip().splitlines()) == 1, (args, result)
    assert repo.snapshot() == before
    assert os.path.islink(repo.root / ".sops.yaml")
    # mallory never got the file
    assert repo.decrypt("secrets/a.yaml", identity=mallory).returncode != 0


def test_a_symlinked_secret_file_is_a_finding(repo: OpsRepo) -> None:
    main_branch(repo)
    repo.write("elsewhere/plain.yaml", "token: hello\n")
    (repo.root / "secrets").mkdir(exist_ok=True)
    os.symlink("../elsewhere/plain.yaml", repo.root / "secrets" / "app.yaml")
    repo.git("add", "-A")
    # from the index (the pre-commit hook), then as pushed
    result = repo.ops("check", "--staged", "--json")
    assert result.code == 1 and "sops-file-symlink" in result.out, result
    push(repo)
    code, found = ci(repo)
    assert code == 1
    assert [(f["path"], f["rule"]) for f in found if f["rule"] == "sops-file-symlink"] == [("secrets/app.yaml", "sops-file-symlink")]


def pgp_fingerprint() -> str:
    return tok.rand(40, "0123456789ABCDEF")


def test_every_key_type_sops_knows_is_reviewed_in_rules_and_key_groups(repo: OpsRepo) -> None:
    main_branch(repo)
    base = (repo.root / ".sops.yaml").read_text()
    account = tok.digits(12)
    added = {
        "pgp": f"    pgp: {pgp_fingerprint()}\n",
        "kms": f"    kms: arn:aws:kms:eu-west-1:{account}:key/{tok.rand(8).lower()}\n",
        "gcp_kms": f"    gcp_kms: projects/p/locations/global/keyRings/r/cryptoKeys/{tok.rand(6)}\n",
        "azure_keyvault": f"    azure_keyvault: https://{tok.rand(6).lower()}.vault.azure.net/keys/sops/{tok.rand(8)}\n",
        "hc_vault_transit_uri": f"    hc_vault_transit_uri: https://vault.example.org:8200/v1/sops/keys/{tok.rand(6)}\n",
    }
    for key_type, line in added.items():
        repo.write(".sops.yaml", base + line)
        code, found = ci(repo)
        assert code == 1, key_type
        assert [f["rule"] for f in found] == ["recipient-added"], (key_type, found)
        assert key_type in str(found[0]["message"]) and found[0]["line"] == 7, (key_type, found)
    # key groups: every type, and keys hidden in a group's merge:
    groups = base.replace(
        "    age: [*admin_dan, *host_clarun]\n",
        "    key_groups:\n"
        "      - age: [*admin_dan, *host_clarun]\n"
        f"        pgp: [{pgp_fingerprint()}]\n"
        f"        kms: [{{arn: 'arn:aws:kms:eu-west-1:{account}:key/k1', role: 'arn:aws:iam::{account}:role/r'}}]\n"
        f"        gcp_kms: [{{resource_id: projects/p/locations/global/keyRings/r/cryptoKeys/{tok.rand(6)}}}]\n"
        f"        azure_keyvault: [{{vaultUrl: 'https://v.vault.azure.net', key: sops, version: '{tok.rand(8)}'}}]\n"
        f"        hc_vault: ['https://vault.example.org:8200/v1/sops/keys/{tok.rand(6)}']\n"
        f"        merge:\n          - age: [{AgeKey.new().recipient}]\n",
    )
    repo.write(".sops.yaml", groups)
    code, found = ci(repo)
    assert code == 1
    messages = " ".join(str(f["message"]) for f in found)
    for key_type in ("pgp key", "kms key", "gcp_kms key", "azure_keyvault key", "hc_vault key"):
        assert key_type in messages, (key_type, found)
    assert sum(1 for f in found if f["rule"] == "recipient-added") == 6, found  # five types + the merged age key


def test_a_changed_role_on_a_kms_key_is_new_access(repo: OpsRepo) -> None:
    account = tok.digits(12)
    group = (
        "keys:\n  - &admin_dan {dan}\ncreation_rules:\n  - path_regex: ^secrets/\n    key_groups:\n"
        "      - age: [*admin_dan]\n        kms: [{{arn: 'arn:aws:kms:eu-west-1:{account}:key/k1', role: '{role}'}}]\n"
    )
    repo.write(".sops.yaml", group.format(dan=repo.operator.recipient, account=account, role=f"arn:aws:iam::{account}:role/ci"))
    repo.git("add", "-A")
    repo.git("commit", "-qm", "base")
    repo.git("branch", "-M", "main")
    repo.write(".sops.yaml", group.format(dan=repo.operator.recipient, account=account, role=f"arn:aws:iam::{account}:role/anyone"))
    code, found = ci(repo)
    assert code == 1 and [f["rule"] for f in found] == ["recipient-added"], found


def test_a_changed_platform_host_is_a_policy_finding(repo: OpsRepo) -> None:
    main_branch(
        repo,
        {"policies/kinds.toml": '[platform]\nhomeserver = "https://matrix.clarun.xyz"\nforgejo_url = "https://git.clarun.xyz"\n'},
    )
    repo.write(
        "policies/kinds.toml", '[platform]\nhomeserver = "https://matrix.evil.test"\nforgejo_url = "https://git.evil.test"\n'
    )
    push(repo)
    code, found = ci(repo)
    assert code == 1
    changed = [(f["path"], f["line"], str(f["message"])) for f in found if f["rule"] == "policy-changed"]
    assert len(changed) == 2, found
    assert changed[0][:2] == ("policies/kinds.toml", 2)
    assert "sends Matrix registration tokens to 'https://matrix.evil.test'" in changed[0][2]
    assert changed[1][:2] == ("policies/kinds.toml", 3)
    assert "takes new engineers' SSH keys from 'https://git.evil.test'" in changed[1][2]


def test_comment_only_policy_edits_and_an_unchanged_branch_are_clean(repo: OpsRepo) -> None:
    main_branch(repo, {"policies/leaks.toml": "[review]\nrecipients = true\n"})
    repo.write("policies/leaks.toml", "# reviewed in #42\n[review]\nrecipients = true  # keep\n")
    push(repo)
    result = repo.ops("check", "--all", "--base", "main")
    assert (result.code, result.out) == (0, ""), result


def test_a_removed_or_symlinked_policy_file_is_a_finding(repo: OpsRepo) -> None:
    main_branch(repo, {"policies/leaks.toml": "[review]\nrecipients = true\n"})
    repo.write("other/leaks.toml", "[review]\nrecipients = false\n")
    (repo.root / "policies" / "leaks.toml").unlink()
    os.symlink("../other/leaks.toml", repo.root / "policies" / "leaks.toml")
    push(repo)
    code, found = ci(repo)
    assert code == 1 and any(f["rule"] == "policy-changed" and "symlink" in str(f["message"]) for f in found), found
    (repo.root / "policies" / "leaks.toml").unlink()
    push(repo)
    code, found = ci(repo)
    assert code == 1 and any(f["rule"] == "policy-changed" and "removed since main" in str(f["message"]) for f in found), found


def test_a_kind_that_stops_verifying_is_named_on_its_own_line(repo: OpsRepo) -> None:
    kinds = (
        '[kinds.chat-token]\nkey_pattern = "chat_.*"\nverify = "none"\n\n'
        '[kinds.slack-bot-token]\nkey_pattern = "slack_bot.*"\nverify = "{verify}"\n'
    )
    main_branch(repo, {"policies/kinds.toml": kinds.format(verify="slack-auth-test")})
    repo.write("policies/kinds.toml", kinds.format(verify="none"))
    push(repo)
    code, found = ci(repo)
    assert code == 1
    assert [(f["line"], f["rule"]) for f in found] == [(7, "policy-changed")], found
    assert "changes how slack-bot-token values are verified ('slack-auth-test' -> 'none')" in str(found[0]["message"])


def test_a_self_referencing_merge_is_refused_not_a_crash(repo: OpsRepo) -> None:
    group = f"      - &g\n        age: {repo.operator.recipient}\n        merge: [*g, *g]\n"
    repo.write(".sops.yaml", "creation_rules:\n  - path_regex: ^secrets/\n    key_groups:\n" + group)
    result = repo.ops("check", "--json", ".sops.yaml")
    assert result.code == 1, result
    assert [f["rule"] for f in json.loads(result.out)["findings"]] == ["sops-config-invalid"]
    result = repo.ops("recipients")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result

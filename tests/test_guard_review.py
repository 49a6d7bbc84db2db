"""`opssecrets check --base REF`: recipients added and removed in `.sops.yaml` since REF."""

from __future__ import annotations

import json

from conftest import AgeKey, OpsRepo

CONFIG = """\
keys:
  - &admin_dan {dan}
  - &host_clarun {host}
  - &alice {alice}
creation_rules:
  - path_regex: ^secrets/projects/web/
    age: [*admin_dan, *host_clarun, *alice]
  - path_regex: ^secrets/
    age: [*admin_dan, *host_clarun]
"""


def committed(repo: OpsRepo) -> dict[str, AgeKey]:
    keys = {"dan": repo.operator, "host": AgeKey.new(), "alice": AgeKey.new()}
    repo.write(".sops.yaml", CONFIG.format(**{k: v.recipient for k, v in keys.items()}))
    repo.git("add", ".sops.yaml")
    repo.git("commit", "-qm", "base")
    return keys


def test_pull_request_adding_a_recipient_is_a_finding(repo: OpsRepo) -> None:
    committed(repo)
    bob = AgeKey.new()
    result = repo.ops("add-engineer", "bob", "--age-key", bob.recipient, "--admin")
    assert result.code == 0, result
    before = repo.snapshot()
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 1, result
    lines = result.out.splitlines()
    assert len(lines) == 1
    line_no = next(i for i, line in enumerate((repo.root / ".sops.yaml").read_text().splitlines(), 1) if bob.recipient in line)
    assert lines[0].startswith(f".sops.yaml:{line_no}: recipient-added: admin_bob".replace("admin_", ""))
    assert "new recipient since HEAD" in lines[0] and "rule 1" in lines[0] and "rule 2" in lines[0]
    assert repo.snapshot() == before
    data = json.loads(repo.ops("check", "--base", "HEAD", "--json").out)
    assert [f["rule"] for f in data["findings"]] == ["recipient-added"]


def test_with_all_in_ci_and_with_staged_content(repo: OpsRepo) -> None:
    committed(repo)
    bob = AgeKey.new()
    text = (repo.root / ".sops.yaml").read_text()
    repo.write(".sops.yaml", text.replace("  - &alice", f"  - &bob {bob.recipient}\n  - &alice").replace("*alice]", "*alice, *bob]"))
    assert repo.ops("check", "--all", "--base", "HEAD").code == 1
    # staged: the index still has the base file, so nothing changed there
    result = repo.ops("check", "--staged", "--base", "HEAD")
    assert result.code == 0, result
    repo.git("add", ".sops.yaml")
    result = repo.ops("check", "--staged", "--base", "HEAD")
    assert result.code == 1 and "recipient-added: bob" in result.out, result


def test_existing_recipient_given_another_rule_is_a_finding(repo: OpsRepo) -> None:
    committed(repo)
    result = repo.ops("add-project", "chat", "--member", "alice")
    assert result.code == 0, result
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 1, result
    assert "recipient-granted: alice" in result.out and "secrets/projects/chat" in result.out
    assert "recipient-added" not in result.out


def test_removed_and_revoked_recipients_are_notes(repo: OpsRepo) -> None:
    committed(repo)
    text = (repo.root / ".sops.yaml").read_text()
    repo.write(".sops.yaml", text.replace("  - &alice {}\n".format(text.split("&alice ")[1].split("\n")[0]), "").replace(", *alice]", "]"))
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 0, result
    assert result.out == ""
    assert "recipient removed since HEAD: alice" in result.err and "rotate" in result.err


def test_only_the_base_policy_can_turn_the_review_off(repo: OpsRepo) -> None:
    committed(repo)
    bob = AgeKey.new()
    assert repo.ops("add-engineer", "bob", "--age-key", bob.recipient, "--admin").code == 0
    # the change under review cannot switch its own review off: the policy comes from the base
    repo.write("policies/leaks.toml", "[review]\nrecipients = false\n")
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 1, result
    assert "recipient-added: bob" in result.out
    assert "policies/leaks.toml:2: policy-changed: turns off the recipient review" in result.out
    # once that policy is reviewed and committed, it applies to the next change
    repo.git("add", "policies/leaks.toml")
    repo.git("commit", "-qm", "review off, reviewed")
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 0, result
    assert "opssecrets: note: bob" in result.err and "new recipient since HEAD" in result.err


def test_unchanged_config_is_clean_and_silent(repo: OpsRepo) -> None:
    committed(repo)
    result = repo.ops("check", "--base", "HEAD")
    assert (result.code, result.out, result.err) == (0, "", "")


def test_base_without_a_sops_yaml_counts_every_recipient_as_added(repo: OpsRepo) -> None:
    repo.write("README", "ops\n")
    repo.git("add", "README")
    repo.git("commit", "-qm", "first")
    committed(repo)
    result = repo.ops("check", "--base", "HEAD~1")
    assert result.code == 1
    assert result.out.count("recipient-added") == 3


def test_bad_refs_and_bad_policy_are_one_line_errors(repo: OpsRepo) -> None:
    committed(repo)
    before = repo.snapshot()
    for ref, fragment in (("no-such-branch", "no such commit"), ("--upload-pack=x", "give a commit")):
        result = repo.ops("check", f"--base={ref}")
        assert result.code == 2, result
        assert fragment in result.err and len(result.err.strip().splitlines()) == 1
    repo.write("policies/leaks.toml", '[review]\nrecipients = "yes"\n')
    result = repo.ops("check", ".sops.yaml")
    assert result.code == 2 and "recipients must be true or false" in result.err, result
    # with --base the branch's policy is not loaded: its change is a finding instead
    result = repo.ops("check", "--base", "HEAD")
    assert result.code == 1 and "policy-changed: changes review.recipients" in result.out, result
    (repo.root / "policies" / "leaks.toml").unlink()
    (repo.root / "policies").rmdir()
    assert repo.snapshot() == before

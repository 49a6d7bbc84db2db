"""`.sops.yaml` round trips: the real corpus, every layout, byte for byte."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from opssecrets.errors import BadInput
from opssecrets.keys import is_age_recipient
from opssecrets.lint import lint_text
from opssecrets.recipients import add_engineer, add_host, add_project, grant, remove, revoke
from opssecrets.regex_samples import sample_matches
from opssecrets.rules import CreationRule, matching_rule
from opssecrets.sopsconfig import SopsConfig
from tests.conftest import AgeKey, corpus_names, run_sops, sops_env


def test_corpus_is_there(corpus: Path) -> None:
    assert len(list(corpus.glob("*.yaml"))) >= 40


def sops_loads(text: str, folder: Path) -> tuple[bool, str]:
    """Whether real sops can load ``text`` as its config (see notes/sops-facts.md): encrypting
    a one-line file fails with "error loading config" only when it cannot, or when no rule
    matches (which is not a fault of the file)."""
    config = folder / "sops-config.yaml"
    config.write_text(text)
    clouds = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "VAULT_", "AZURE_"))}
    env = sops_env({"AWS_EC2_METADATA_DISABLED": "true"}, base=clouds)
    args = ["encrypt", "--input-type", "yaml", "--output-type", "yaml", "--filename-override", "zz.yaml", "/dev/stdin"]
    proc = run_sops(*args, cwd=folder, env=env, config=config, stdin=b"a: 1\n")
    err = proc.stderr.decode(errors="replace")
    return proc.returncode == 0 or "error loading config" not in err or "no matching creation rules" in err, err


def _non_age_keys(rule: CreationRule) -> list[tuple[str, str]]:
    return [entry for group in rule.groups for entry in group.other]


@pytest.mark.parametrize("name", corpus_names())
def test_corpus_edits_keep_sops_loading_the_file_and_round_trip(corpus: Path, name: str, tmp_path: Path) -> None:
    """add-engineer --admin, add-host and their removal on every real config: only rules
    already read with age keys gain the key, real sops still loads each edited file, and the
    removals give back the original bytes."""
    path = corpus / name
    text = path.read_text()
    config = SopsConfig(text, path.name)
    assert config.text == text
    assert sops_loads(text, tmp_path)[0]
    admin, host = AgeKey.new(), AgeKey.new()
    added = add_engineer(config, "zed", admin.recipient, admin=True, projects=[]).after
    added = add_host(added, "zhost", host.recipient, projects=[]).after
    assert "admin_zed" in added.named() and "host_zhost" in added.named()
    for before, rule in zip(config.rules, added.rules, strict=True):
        assert _non_age_keys(rule) == _non_age_keys(before), rule.label
        if before.age_recipients:
            assert rule.age_recipients == (*before.age_recipients, admin.recipient, host.recipient), rule.label
        else:  # KMS/PGP/Vault-only rules: an age key would bypass the cloud IAM or the token
            assert rule.age_recipients == (), rule.label
    loads, err = sops_loads(added.text, tmp_path)
    assert loads, err
    # every recipient the file had is still listed, and still reads the same rules
    before_rules = {r.key: [x.index for x in config.rules_with(r.key)] for r in config.recipients}
    after_rules = {r.key: [x.index for x in added.rules_with(r.key)] for r in added.recipients}
    assert all(after_rules[key] == rules for key, rules in before_rules.items())
    removed = remove(added, "zhost", role="host")[0].after
    assert sops_loads(removed.text, tmp_path)[0]
    removed = remove(removed, "zed", role="engineer")[0].after
    assert removed.text == text


@pytest.mark.parametrize("name", corpus_names())
def test_corpus_removing_a_real_recipient_is_clean_or_refused(corpus: Path, name: str, tmp_path: Path) -> None:
    """remove-engineer of a recipient the file names (age or PGP): either a file sops loads,
    or a clear refusal (BadInput, exit 2); never an internal error."""
    path = corpus / name
    config = SopsConfig(path.read_text(), path.name)
    people = [r for r in config.recipients if r.name is not None and r.role != "host"]
    chosen = [*[r for r in people if r.key_type == "age"][:1], *[r for r in people if r.key_type != "age"][:1]]
    for recipient in chosen:
        assert recipient.name is not None
        try:
            after = remove(config, recipient.name, role="engineer")[0].after
        except BadInput as exc:
            assert recipient.key_type == "age" or "removes age recipients only" in exc.message
            continue
        assert recipient.key_type == "age"
        assert all(recipient.key not in rule.age_recipients for rule in after.rules)
        loads, err = sops_loads(after.text, tmp_path)
        assert loads, err


def _x25519_only(rule: CreationRule) -> bool:
    """Rules sops can encrypt for here: only X25519 age recipients (no pgp/KMS, no age plugins)."""
    return rule.only_age and all(is_age_recipient(key) for key in rule.age_recipients)


def _age_only(config: SopsConfig) -> bool:
    with_keys = [rule for rule in config.rules if rule.has_recipients]
    return bool(with_keys) and all(_x25519_only(rule) for rule in with_keys)


def _sops(args: list[str], cwd: Path, identity: AgeKey | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_sops(*args, cwd=cwd, env=sops_env({"SOPS_AGE_KEY": identity.identity} if identity is not None else None))


@pytest.mark.parametrize("name", corpus_names(lambda p: _age_only(SopsConfig(p.read_text(), p.name))))
def test_real_sops_encrypts_for_the_new_admin_under_every_age_rule(corpus: Path, name: str, tmp_path: Path) -> None:
    path = corpus / name
    config = SopsConfig(path.read_text(), path.name)
    newcomer = AgeKey.new()
    edited = add_engineer(config, "zed", newcomer.recipient, admin=True, projects=[]).after
    (tmp_path / ".sops.yaml").write_text(edited.text)
    checked = 0
    for rule in edited.rules:
        if not rule.has_recipients or not _x25519_only(rule):
            continue
        samples = sample_matches(rule.path_regex) if rule.path_regex else ["any.yaml"]
        prefixed = ["d" + s if s.startswith(("/", "-")) else s for s in samples]
        candidates = [s for s in prefixed if s and os.path.normpath(s) == s]
        rel = next((s for s in candidates if matching_rule(edited.rules, s) is rule and not (tmp_path / s).exists()), None)
        if rel is None:
            continue
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("value: secret-for-test\n")
        enc = _sops(["--config", ".sops.yaml", "encrypt", "--input-type", "yaml", "--output-type", "yaml", "-i", rel], tmp_path)
        assert enc.returncode == 0, enc.stderr.decode()
        dec = _sops(["decrypt", "--input-type", "yaml", "--output-type", "yaml", rel], tmp_path, newcomer)
        assert dec.returncode == 0, dec.stderr.decode()
        assert b"secret-for-test" in dec.stdout
        checked += 1
    assert checked >= 1


BLOCK = """\
# team keys
keys:
  # admins
  - &admin_dan {dan}   # dan's laptop
  - &host_clarun {host}
creation_rules:
  - path_regex: ^secrets/[^/]+\\.yaml$
    key_groups:
    - age:
      - *admin_dan
      - *host_clarun
"""


def test_unchanged_file_round_trips_byte_identical_even_with_odd_bytes() -> None:
    dan, host = AgeKey.new(), AgeKey.new()
    text = "---\n" + BLOCK.format(dan=dan.recipient, host=host.recipient).replace("key_groups:", "key_groups:   ") + "..."
    assert SopsConfig(text).text == text


def test_add_engineer_keeps_comments_and_style() -> None:
    dan, host, eve = AgeKey.new(), AgeKey.new(), AgeKey.new()
    text = BLOCK.format(dan=dan.recipient, host=host.recipient)
    after = add_engineer(SopsConfig(text), "eve", eve.recipient, admin=True, projects=[]).after.text
    assert after == text.replace(
        f"  - &host_clarun {host.recipient}\n", f"  - &host_clarun {host.recipient}\n  - &admin_eve {eve.recipient}\n"
    ).replace("      - *host_clarun\n", "      - *host_clarun\n      - *admin_eve\n")


def test_comma_string_rules_get_the_key_appended_in_place() -> None:
    dan, eve = AgeKey.new(), AgeKey.new()
    text = f"creation_rules:\n  - path_regex: x\n    age: >-\n      {dan.recipient}\n    pgp: ABCDEF\n"
    after = add_engineer(SopsConfig(text), "eve", eve.recipient, admin=True, projects=[]).after
    assert f"      {dan.recipient},\n      {eve.recipient}\n    pgp: ABCDEF\n" in after.text
    assert after.rules[0].age_recipients == (dan.recipient, eve.recipient)
    assert after.text.startswith("keys:\n  - &admin_eve ")


def test_flow_lists_stay_flow() -> None:
    dan, eve = AgeKey.new(), AgeKey.new()
    text = f"keys:\n  - &dan {dan.recipient}\ncreation_rules:\n  - path_regex: x\n    key_groups:\n      - age: [ *dan ]\n"
    after = add_engineer(SopsConfig(text), "eve", eve.recipient, admin=True, projects=[]).after
    assert "- age: [ *dan, *admin_eve ]\n" in after.text


def test_alias_before_anchor_is_a_clear_error() -> None:
    text = "creation_rules:\n  - age: *dan\nkeys:\n  - &dan age1x\n"
    with pytest.raises(BadInput, match=r"line 2: alias \*dan is used before its anchor"):
        SopsConfig(text)


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(BadInput, match=r"line 3: not valid YAML"):
        SopsConfig("creation_rules:\n  - path_regex: [unclosed\n")


def test_rule_matching_follows_sops_first_match_unanchored() -> None:
    text = "creation_rules:\n  - path_regex: \\.env$\n    age: a\n  - path_regex: ^secrets/\n    age: b\n  - age: c\n"
    rules = SopsConfig(text).rules
    assert matching_rule(rules, "secrets/x.env") is rules[0]
    assert matching_rule(rules, "deep/secrets/x.yaml") is rules[2]  # ^ anchors at the start of the relative path
    assert matching_rule(rules, "secrets/x.yaml") is rules[1]
    assert matching_rule(rules, "anything") is rules[2]


# -- real configs: only age rules gain age keys, and sops must still load the result -----------

PGP = "F095F28F7B1BA4DD0D93554EE179454B201E23CA"
KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _mixed(dan: str) -> str:
    return f"""\
keys:
  - &admin_dan {dan}
  - &joerg {PGP}
creation_rules:
  - path_regex: ^pgp/
    key_groups:
    - pgp:
      - *joerg
  - path_regex: ^cloud/
    kms: {KMS}
  - path_regex: ^both/
    key_groups:
    - pgp:
      - *joerg
    - age:
      - *admin_dan
  - path_regex: ^secrets/
    age: *admin_dan
"""


def test_rules_protected_only_by_pgp_or_kms_gain_no_age_key_and_sops_loads_the_result(tmp_path: Path) -> None:
    dan, eve, host = AgeKey.new(), AgeKey.new(), AgeKey.new()
    config = SopsConfig(_mixed(dan.recipient))
    edit = add_engineer(config, "eve", eve.recipient, admin=True, projects=[])
    after = add_host(edit.after, "web", host.recipient, projects=[])
    for edited in (edit.after, after.after):
        assert [rule.age_recipients for rule in edited.rules[:2]] == [(), ()]
        assert eve.recipient in edited.rules[2].age_recipients and eve.recipient in edited.rules[3].age_recipients
        # the age key went into the age group, never beside the PGP keys of the first one
        assert edited.rules[2].groups[0].age == ()
        loads, err = sops_loads(edited.text, tmp_path)
        assert loads, err
    for notes in (edit.notes, after.notes):
        assert "left alone: rule 1 (^pgp/): protected by pgp only" in notes
        assert "left alone: rule 2 (^cloud/): protected by kms only" in notes


def test_a_key_group_without_age_gets_an_age_list_never_a_scalar(tmp_path: Path) -> None:
    dan, eve = AgeKey.new(), AgeKey.new()
    text = _mixed(dan.recipient).replace("^pgp/", "^secrets/projects/web/")
    config = add_engineer(SopsConfig(text), "eve", eve.recipient, admin=False, projects=[]).after
    granted = grant(config, "eve", "web").after
    assert "    - pgp:\n      - *joerg\n      age: [*eve]\n" in granted.text
    assert granted.rules[0].age_recipients == (eve.recipient,)
    loads, err = sops_loads(granted.text, tmp_path)
    assert loads, err
    assert revoke(granted, "eve", "web").after.text == config.text


def test_lint_reports_a_scalar_inside_key_groups_that_sops_refuses(tmp_path: Path) -> None:
    dan = AgeKey.new()
    pgp_group = "    - pgp:\n      - *joerg\n  - path_regex: ^cloud/"
    text = _mixed(dan.recipient).replace(pgp_group, pgp_group.replace("joerg\n", "joerg\n      age: *admin_dan\n"))
    loads, err = sops_loads(text, tmp_path)
    assert not loads and "cannot unmarshal" in err  # the control: sops refuses the whole file
    messages = [p.message for p in lint_text(text) if p.level == "error"]
    assert any("key group 1: 'age' is a single value, but sops needs a list inside key_groups" in m for m in messages)
    assert not [p for p in lint_text(_mixed(dan.recipient)) if p.level == "error"]


def test_remove_of_a_pgp_anchor_is_refused_not_an_internal_error() -> None:
    config = SopsConfig(_mixed(AgeKey.new().recipient))
    with pytest.raises(BadInput, match=r"joerg is a PGP key .*removes age recipients only"):
        remove(config, "joerg", role="engineer")


def test_duplicate_mapping_keys_are_refused_naming_the_line(tmp_path: Path) -> None:
    dan, eve = AgeKey.new(), AgeKey.new()
    text = _mixed(dan.recipient) + f"creation_rules:\n  - age: {eve.recipient}\n"
    assert not sops_loads(text, tmp_path)[0]  # the control: sops refuses it
    with pytest.raises(BadInput, match="line 19: the key 'creation_rules' appears twice"):
        SopsConfig(text)
    assert any("appears twice" in p.message for p in lint_text(text) if p.level == "error")


def test_crlf_files_get_crlf_lines_and_round_trip(tmp_path: Path) -> None:
    dan, host, eve = AgeKey.new(), AgeKey.new(), AgeKey.new()
    text = BLOCK.format(dan=dan.recipient, host=host.recipient).replace("\n", "\r\n")
    config = SopsConfig(text)
    added = add_engineer(config, "eve", eve.recipient, admin=True, projects=[]).after
    assert added.text.count("\n") == added.text.count("\r\n") == text.count("\n") + 2
    project = add_project(added, "web", [], []).after
    assert project.text.count("\n") == project.text.count("\r\n")
    loads, err = sops_loads(project.text, tmp_path)
    assert loads, err
    assert remove(added, "eve", role="engineer")[0].after.text == text


ADOPTED = """\
keys:
  - &users:
    - &alice {alice}
  - &hosts :
    - &kazuki {kazuki}
  - &yumiko {yumiko}
  admins_are_here: null
creation_rules:
  - path_regex: hosts/kazuki/secrets\\.yaml$
    key_groups:
    - age: [*alice, *kazuki]
  - path_regex: hosts/yumiko/secrets\\.yaml$
    key_groups:
    - age: [*alice, *yumiko]
"""


def test_roles_come_from_hosts_users_groups_and_host_named_paths() -> None:
    people = {name: AgeKey.new().recipient for name in ("alice", "kazuki", "yumiko")}
    text = ADOPTED.format(**people).replace("  admins_are_here: null\n", "")
    config = SopsConfig(text)
    roles = {r.name: (r.role, r.role_from) for r in config.recipients}
    assert roles == {
        "alice": ("engineer", "listed under users"),
        "kazuki": ("host", "listed under hosts"),
        "yumiko": ("host", "path hosts/yumiko/secrets\\.yaml$"),
    }
    problems = lint_text(text)
    # sops reads `&users:` as the anchor `users` and a ':'; not an unparseable name
    assert not [p for p in problems if p.level == "error"]
    assert not [p for p in problems if "no host reads this rule" in p.message]
    assert [p.message for p in problems if "admin" in p.message] == [
        "no recipient is an admin (anchor prefix admin_, or listed under 'admins:'): "
        "mark the people who must always read everything, or coverage cannot be checked"
    ]


def test_a_config_of_77_kib_is_read_and_edited() -> None:
    """Size caps come from real configs: a research cluster's .sops.yaml is 77 KiB."""
    admins = [AgeKey.new().recipient for _ in range(6)]
    hosts = [AgeKey.new().recipient for _ in range(40)]
    lines = ["keys:"]
    lines += [f"  - &admin_a{i} {key}  # admin {i}'s laptop" for i, key in enumerate(admins)]
    lines += [f"  - &host_node{i} {key}  # node {i}, rack {i % 4}" for i, key in enumerate(hosts)]
    lines.append("creation_rules:")
    for i in range(len(hosts)):
        for kind in ("secrets", "certs", "backup", "monitoring", "storage", "vpn"):
            lines.append(f"  # node{i}: {kind} for the node's services, deployed at activation by sops-nix")
            lines += [f"  - path_regex: ^hosts/node{i}/{kind}/[^/]+\\.(yaml|json|env)$", "    key_groups:", "      - age:"]
            lines += [f"          - *admin_a{j}" for j in range(len(admins))] + [f"          - *host_node{i}"]
    text = "\n".join(lines) + "\n"
    assert len(text) > 77 * 1024
    config = SopsConfig(text)
    newcomer = AgeKey.new()
    added = add_engineer(config, "zed", newcomer.recipient, admin=True, projects=[]).after
    assert all(newcomer.recipient in rule.age_recipients for rule in added.rules)
    assert remove(added, "zed", role="engineer")[0].after.text == text

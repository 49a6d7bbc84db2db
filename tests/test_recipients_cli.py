"""The recipient lifecycle end to end: real git repos, real sops, real age keys."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opssecrets.keys import parse_ssh_public_key, recipient_from_public_bytes
from tests.conftest import PROJECT_ROOT, AgeKey, OpsRepo, cli_argv, cli_env, run_cli, run_sops, sops_env

SECRETS = "matrix-registration-token: reg-0001\nacme-email: ops@example.invalid\nslack:\n    bot_token: bot-0001\n"


def ssh_host_key() -> str:
    private = Ed25519PrivateKey.generate()
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " root@clarun"


@pytest.fixture
def platform(repo: OpsRepo) -> OpsRepo:
    """clarun's layout: admin dan (the operator), host clarun, secrets/secrets.yaml, project hello-bot."""
    result = repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient, "--host", "clarun", "--ssh-host-key", ssh_host_key())
    assert result.code == 0, result
    repo.encrypt("secrets/secrets.yaml", SECRETS)
    assert repo.ops("add-project", "hello-bot").code == 0
    repo.encrypt("secrets/projects/hello-bot/secrets.yaml", "bot-password: hello-0001\n")
    return repo


def can_read(repo: OpsRepo, rel: str, who: AgeKey) -> bool:
    return repo.decrypt(rel, identity=who).returncode == 0


def test_init_writes_the_platform_layout_and_refuses_to_overwrite(platform: OpsRepo) -> None:
    text = (platform.root / ".sops.yaml").read_text()
    assert f"- &admin_dan {platform.operator.recipient}" in text
    assert "&host_clarun age1" in text
    assert (platform.root / "secrets").is_dir()
    before = platform.snapshot()
    again = platform.ops("init", "--admin", "x", "--age-key", AgeKey.new().recipient)
    assert again.code == 2 and "already exists" in again.err
    assert platform.snapshot() == before


def test_add_engineer_to_a_project_reencrypts_only_that_project(platform: OpsRepo) -> None:
    eve = AgeKey.new()
    platform_file = (platform.root / "secrets/secrets.yaml").read_bytes()
    result = platform.ops("add-engineer", "eve", "--age-key", eve.recipient, "--project", "hello-bot")
    assert result.code == 0, result
    assert "secrets/projects/hello-bot/secrets.yaml" in result.out
    assert can_read(platform, "secrets/projects/hello-bot/secrets.yaml", eve)
    assert not can_read(platform, "secrets/secrets.yaml", eve)
    assert (platform.root / "secrets/secrets.yaml").read_bytes() == platform_file


def test_add_admin_reads_everything_and_values_are_unchanged(platform: OpsRepo) -> None:
    eve = AgeKey.new()
    before = yaml.safe_load((platform.root / "secrets/secrets.yaml").read_text())
    assert platform.ops("add-engineer", "eve", "--age-key", eve.recipient, "--admin").code == 0
    after = yaml.safe_load((platform.root / "secrets/secrets.yaml").read_text())
    assert after["matrix-registration-token"] == before["matrix-registration-token"]  # updatekeys re-wraps only
    assert can_read(platform, "secrets/secrets.yaml", eve)
    assert can_read(platform, "secrets/projects/hello-bot/secrets.yaml", eve)
    assert "&admin_eve" in (platform.root / ".sops.yaml").read_text()


def test_add_engineer_with_ssh_key(platform: OpsRepo, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result = platform.ops("add-engineer", "eve", "--ssh-key", str(key) + ".pub", "--project", "hello-bot")
    assert result.code == 0, result
    expected = parse_ssh_public_key((tmp_path / "id_ed25519.pub").read_text()).age_recipient
    assert f"&eve {expected}" in (platform.root / ".sops.yaml").read_text()


def test_remove_engineer_rotates_so_old_wrapped_key_from_git_history_is_useless(platform: OpsRepo) -> None:
    eve = AgeKey.new()
    assert platform.ops("add-engineer", "eve", "--age-key", eve.recipient, "--admin").code == 0
    rel = "secrets/secrets.yaml"
    old_meta = yaml.safe_load((platform.root / rel).read_text())["sops"]["age"]
    eve_entry = next(e for e in old_meta if e["recipient"] == eve.recipient)
    result = platform.ops("remove-engineer", "eve")
    assert result.code == 0, result
    assert "matrix-registration-token" in result.err and "slack/bot_token" in result.err  # values to re-issue
    assert "rotated" in result.out
    assert not can_read(platform, rel, eve)
    # a value changed later, then eve's old sops.age entry (from git history) put back
    proc = platform.sops("set", "--value-stdin", rel, '["acme-email"]', stdin=b'"new@example.invalid"')
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load((platform.root / rel).read_text())
    doc["sops"]["age"].append(eve_entry)
    (platform.root / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not can_read(platform, rel, eve)
    assert can_read(platform, rel, platform.operator)
    assert "&admin_eve" not in (platform.root / ".sops.yaml").read_text()


def test_without_rotation_the_history_attack_works(platform: OpsRepo) -> None:
    """The control for the test above: updatekeys alone leaves the old entry usable."""
    eve = AgeKey.new()
    assert platform.ops("add-engineer", "eve", "--age-key", eve.recipient, "--admin").code == 0
    rel = "secrets/secrets.yaml"
    eve_entry = next(e for e in yaml.safe_load((platform.root / rel).read_text())["sops"]["age"] if e["recipient"] == eve.recipient)
    config = (
        (platform.root / ".sops.yaml").read_text().replace(f"  - &admin_eve {eve.recipient}\n", "").replace("          - *admin_eve\n", "")
    )
    (platform.root / ".sops.yaml").write_text(config)
    assert platform.sops("updatekeys", "-y", rel).returncode == 0
    doc = yaml.safe_load((platform.root / rel).read_text())
    doc["sops"]["age"].append(eve_entry)
    (platform.root / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert can_read(platform, rel, eve)


def test_dry_run_changes_nothing_and_prints_the_plan(platform: OpsRepo) -> None:
    before = platform.snapshot()
    result = platform.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin", "--dry-run")
    assert result.code == 0
    assert "would change" in result.out and "+  - &admin_eve" in result.out
    assert "secrets/secrets.yaml" in result.out
    assert platform.snapshot() == before


def test_add_host_reads_every_rule_and_replace_rotates(platform: OpsRepo) -> None:
    result = platform.ops("add-host", "backup", "--ssh-host-key", ssh_host_key())
    assert result.code == 0, result
    access = json.loads(platform.ops("access", "--json").out)["files"]
    assert all("backup" in row["can_read"] for row in access)
    old = yaml.safe_load((platform.root / "secrets/secrets.yaml").read_text())["matrix-registration-token"]
    replaced = platform.ops("add-host", "backup", "--ssh-host-key", ssh_host_key(), "--replace")
    assert replaced.code == 0, replaced
    new = yaml.safe_load((platform.root / "secrets/secrets.yaml").read_text())["matrix-registration-token"]
    assert old != new  # data key rotated: every value re-encrypted
    assert can_read(platform, "secrets/secrets.yaml", platform.operator)
    assert platform.ops("reencrypt", "--check").code == 0


def test_remove_host(platform: OpsRepo) -> None:
    assert platform.ops("add-host", "backup", "--ssh-host-key", ssh_host_key()).code == 0
    assert platform.ops("remove-engineer", "backup").code == 2  # a host, not an engineer
    result = platform.ops("remove-host", "backup")
    assert result.code == 0, result
    assert "host_backup" not in (platform.root / ".sops.yaml").read_text()
    assert platform.ops("reencrypt", "--check").code == 0


def test_add_project_goes_before_a_rule_that_would_shadow_it(repo: OpsRepo) -> None:
    text = (
        f"keys:\n  - &admin_dan {repo.operator.recipient}\n"
        "creation_rules:\n  - path_regex: ^secrets/\n    key_groups:\n      - age:\n          - *admin_dan\n"
    )
    repo.write(".sops.yaml", text)
    assert repo.ops("add-project", "web").code == 0
    rules = yaml.safe_load((repo.root / ".sops.yaml").read_text())["creation_rules"]
    assert rules[0]["path_regex"] == "^secrets/projects/web/"
    assert rules[1]["path_regex"] == "^secrets/"


def test_grant_and_revoke(platform: OpsRepo) -> None:
    eve = AgeKey.new()
    assert platform.ops("add-engineer", "eve", "--age-key", eve.recipient).code == 0
    rel = "secrets/projects/hello-bot/secrets.yaml"
    assert not can_read(platform, rel, eve)
    assert platform.ops("grant", "eve", "hello-bot").code == 0
    assert can_read(platform, rel, eve)
    ciphertext = yaml.safe_load((platform.root / rel).read_text())["bot-password"]
    result = platform.ops("revoke", "eve", "hello-bot")
    assert result.code == 0, result
    assert not can_read(platform, rel, eve)
    assert yaml.safe_load((platform.root / rel).read_text())["bot-password"] != ciphertext  # rotated
    assert "bot-password" in result.err


def test_recipients_json(platform: OpsRepo) -> None:
    rows = json.loads(platform.ops("recipients", "--json").out)["recipients"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["dan"]["role"] == "admin" and by_name["dan"]["rules"] == [1, 2]
    assert by_name["clarun"]["role"] == "host"


def test_access_shows_drift_and_reencrypt_fixes_it_with_one_sops_call(platform: OpsRepo) -> None:
    eve = AgeKey.new()
    # hand edit: eve added to .sops.yaml without re-encrypting
    config = (platform.root / ".sops.yaml").read_text()
    config = config.replace("  - &host_clarun", f"  - &eve {eve.recipient}\n  - &host_clarun").replace(
        "          - *host_clarun\n", "          - *host_clarun\n          - *eve\n"
    )
    (platform.root / ".sops.yaml").write_text(config)
    rows = json.loads(platform.ops("access", "--json").out)["files"]
    assert all(row["differs"] and row["missing"] == ["eve"] for row in rows)
    check = platform.ops("reencrypt", "--check")
    assert check.code == 1
    assert platform.ops("reencrypt").code == 0
    assert platform.ops("reencrypt", "--check").code == 0
    assert can_read(platform, "secrets/secrets.yaml", eve)


def test_files_in_line_cost_no_sops_call(platform: OpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "sops"
    real = subprocess.run(["which", "sops"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    platform.monkeypatch.setenv("OPSSECRETS_SOPS", str(wrapper))
    assert platform.ops("reencrypt").code == 0
    calls = [line for line in log.read_text().splitlines() if "--version" not in line] if log.exists() else []
    assert calls == []


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remove-engineer", "nobody"], "no recipient named 'nobody'"),
        (["add-engineer", "dan", "--age-key", "AGEKEY"], "already exists"),
        (["add-engineer", "eve", "--age-key", "OPERATOR"], "already belongs to admin_dan"),
        (["add-engineer", "eve", "--age-key", "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"], "checksum"),
        (["add-engineer", "eve", "--ssh-key", "RSA"], "ssh-rsa keys cannot become age recipients"),
        (["add-engineer", "eve@corp", "--age-key", "AGEKEY"], "sops only parses anchor names"),
        (["add-engineer", "eve", "--age-key", "AGEKEY", "--project", "nope"], "no project 'nope'"),
        (["grant", "dan", "nope"], "no project 'nope'"),
        (["add-host", "clarun", "--ssh-host-key", "not a key"], "not an SSH public key"),
        (["add-project", "pj\n"], "project name 'pj\\n' cannot be used"),
        (["add-engineer", "eve\n", "--age-key", "AGEKEY"], "name 'eve\\n' cannot be used"),
        (["add-engineer", "admin_eve", "--age-key", "AGEKEY"], "starts with 'admin_', which makes it an admin"),
        (["add-engineer", "server_x", "--age-key", "AGEKEY"], "starts with 'server_', which makes it a host"),
        (["add-host", "admin_x", "--ssh-host-key", "SSHHOST"], "starts with 'admin_', which makes it an admin"),
        (["add-engineer", "eve", "--age-key", "ZERO"], "low-order X25519 point"),
        (["add-host", "web2", "--ssh-host-key", "FORGED"], "not a valid ed25519 public key"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(platform: OpsRepo, tmp_path: Path, args: list[str], message: str) -> None:
    rsa = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    identity_point = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", bytes([1]) + bytes(31)))
    swap = {
        "AGEKEY": AgeKey.new().recipient,
        "OPERATOR": platform.operator.recipient,
        "RSA": (tmp_path / "id_rsa.pub").read_text(),
        "ZERO": recipient_from_public_bytes(bytes(32)),
        "SSHHOST": ssh_host_key(),
        "FORGED": "ssh-ed25519 " + base64.b64encode(identity_point).decode() + " forged",
    }
    args = [swap.get(a, a) for a in args]
    before = platform.snapshot()
    result = platform.ops(*args)
    assert result.code == 2, result
    assert message in result.err
    assert result.err.count("\n") == 1
    assert platform.snapshot() == before


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("creation_rules:\n  - age: *dan\nkeys:\n  - &dan age1x\n", "line 2: alias *dan is used before its anchor"),
        ("creation_rules: [\n", "not valid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_a_broken_sops_yaml_is_one_line_exit_2_and_changes_nothing(platform: OpsRepo, config: str, message: str) -> None:
    (platform.root / ".sops.yaml").write_text(config)
    before = platform.snapshot()
    for args in (["add-engineer", "eve", "--age-key", AgeKey.new().recipient], ["remove-engineer", "dan"], ["reencrypt"], ["recipients"]):
        result = platform.ops(*args)
        assert result.code == 2, (args, result)
        assert message in result.err and result.err.count("\n") == 1
    assert platform.snapshot() == before
    assert platform.ops("lint").code == 1


def test_a_file_no_identity_can_decrypt_fails_the_whole_change(platform: OpsRepo) -> None:
    stranger = AgeKey.new()
    foreign = f"creation_rules:\n  - age: {stranger.recipient}\n"
    (platform.root / "elsewhere").mkdir()
    (platform.root / "elsewhere/.sops.yaml").write_text(foreign)
    (platform.root / "secrets/other.yaml").write_text("x: 1\n")
    env = sops_env({"SOPS_AGE_KEY": stranger.identity})
    enc = run_sops("encrypt", "-i", "secrets/other.yaml", cwd=platform.root, env=env, config="elsewhere/.sops.yaml")
    assert enc.returncode == 0, enc.stderr
    before = platform.snapshot()
    result = platform.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin")
    assert result.code == 3, result
    assert "secrets/other.yaml" in result.err and "no identity" in result.err
    assert result.err.count("\n") == 1
    assert platform.snapshot() == before


def test_sops_missing_or_too_old_is_exit_3(platform: OpsRepo, tmp_path: Path) -> None:
    old = tmp_path / "old-sops"
    old.write_text("#!/bin/sh\necho 'sops 3.8.1'\n")
    old.chmod(0o755)
    before = platform.snapshot()
    platform.monkeypatch.setenv("OPSSECRETS_SOPS", str(old))
    result = platform.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin")
    assert result.code == 3 and "too old" in result.err and "pip install" in result.err
    platform.monkeypatch.delenv("OPSSECRETS_SOPS")
    # sops neither on PATH nor beside the interpreter: the base Python, reading the venv's
    # packages through PYTHONPATH, has no sops in its scripts folder
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    assert shutil.which("sops", path=str(base_python.parent)) is None
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    env = cli_env({"PATH": str(tmp_path / "empty"), "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), site])})
    args = ["add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin"]
    proc = run_cli(*args, root=platform.root, env=env, python=str(base_python))
    assert proc.returncode == 3 and "sops not found beside" in proc.stderr, proc.stderr
    assert platform.snapshot() == before


def test_a_second_run_is_refused_while_one_holds_the_lock(platform: OpsRepo) -> None:
    import fcntl

    state = platform.root / ".git" / "opssecrets"
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("4242")
        handle.flush()
        before = platform.snapshot()
        result = platform.ops_proc("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin")
        assert result.code == 3 and "another opssecrets run (pid 4242)" in result.err
        assert platform.snapshot() == before
    # the lock died with its holder: the next run goes through
    assert platform.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin").code == 0


def test_staging_leaves_no_files_behind_and_secret_files_keep_their_mode(platform: OpsRepo) -> None:
    target = platform.root / "secrets/secrets.yaml"
    target.chmod(0o640)
    assert platform.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin").code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert list((platform.root / ".git" / "opssecrets").glob("stage-*")) == []


def test_progress_bar_on_a_terminal_only(platform: OpsRepo) -> None:
    """More than a few files re-encrypted: a progress bar on stderr when it is a terminal."""
    import pty

    for i in range(8):
        platform.encrypt(f"secrets/extra{i}.yaml", f"v: {i}\n")
    leader, follower = pty.openpty()
    args = ["add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin"]
    proc = subprocess.run(  # stderr is a terminal here, which run_cli's captured pipes are not
        cli_argv(*args, root=platform.root),
        stderr=follower,
        stdout=subprocess.PIPE,
        env=cli_env(platform.extra_env),
        check=False,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"re-wrapping data keys [" in seen and b"10/10" in seen
    piped = platform.ops_proc("remove-engineer", "eve")
    assert piped.code == 0 and "[####" not in piped.err


def test_in_a_git_worktree_the_lock_and_staging_stay_out_of_the_work_tree(platform: OpsRepo, tmp_path: Path) -> None:
    platform.git("add", "-A")
    platform.git("commit", "-qm", "platform")
    tree = tmp_path / "tree"
    platform.git("worktree", "add", "-q", str(tree))
    args = ["add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin"]
    proc = run_cli(*args, root=tree, env=cli_env(platform.extra_env))
    assert proc.returncode == 0, proc.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True, check=True).stdout
    assert status.split() == ["M", ".sops.yaml", "M", "secrets/projects/hello-bot/secrets.yaml", "M", "secrets/secrets.yaml"]


# ------------------------------------------------- adopted configs with other key types

PGP_FP = "F095F28F7B1BA4DD0D93554EE179454B201E23CA"
KMS_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def mixed(repo: OpsRepo) -> OpsRepo:
    """A config whose first rules are protected by KMS and PGP only; the last by age."""
    (repo.root / ".sops.yaml").write_text(
        f"keys:\n  - &admin_dan {repo.operator.recipient}\n  - &joerg {PGP_FP}\ncreation_rules:\n"
        f"  - path_regex: ^cloud/\n    kms: {KMS_ARN}\n"
        "  - path_regex: ^pgp/\n    key_groups:\n    - pgp:\n      - *joerg\n"
        "  - path_regex: ^secrets/\n    key_groups:\n    - age:\n      - *admin_dan\n"
    )
    (repo.root / "secrets").mkdir()
    repo.encrypt("secrets/app.yaml", "token: t-0001\n")
    return repo


def test_admin_and_host_leave_kms_and_pgp_rules_alone_and_say_so(mixed: OpsRepo) -> None:
    eve = AgeKey.new()
    result = mixed.ops("add-engineer", "eve", "--admin", "--age-key", eve.recipient)
    assert result.code == 0, result
    assert "left alone: rule 1 (^cloud/): protected by kms only" in result.err
    assert "left alone: rule 2 (^pgp/): protected by pgp only" in result.err
    text = (mixed.root / ".sops.yaml").read_text()
    untouched = f"  - path_regex: ^cloud/\n    kms: {KMS_ARN}\n  - path_regex: ^pgp/\n    key_groups:\n    - pgp:\n      - *joerg\n  - path"
    assert untouched in text
    assert can_read(mixed, "secrets/app.yaml", eve)
    result = mixed.ops("add-host", "web", "--ssh-host-key", ssh_host_key())
    assert result.code == 0 and "left alone: rule 1 (^cloud/): protected by kms only" in result.err
    assert (mixed.root / ".sops.yaml").read_text().count("*host_web") == 1


def test_remove_engineer_of_a_pgp_anchor_is_exit_2_and_changes_nothing(mixed: OpsRepo) -> None:
    before = mixed.snapshot()
    result = mixed.ops("remove-engineer", "joerg")
    assert result.code == 2, result
    assert "joerg is a PGP key" in result.err and result.err.count("\n") == 1
    assert mixed.snapshot() == before


def test_duplicate_creation_rules_are_exit_2_naming_the_line(mixed: OpsRepo) -> None:
    path = mixed.root / ".sops.yaml"
    path.write_text(path.read_text() + f"creation_rules:\n  - age: {AgeKey.new().recipient}\n")
    before = mixed.snapshot()
    result = mixed.ops("add-engineer", "eve", "--admin", "--age-key", AgeKey.new().recipient)
    assert result.code == 2 and "line 15: the key 'creation_rules' appears twice" in result.err, result
    assert mixed.snapshot() == before
    lint = mixed.ops("lint")
    assert lint.code == 1 and "appears twice" in lint.out


def test_recipients_shows_where_each_role_came_from(repo: OpsRepo) -> None:
    alice, web = AgeKey.new(), AgeKey.new()
    (repo.root / ".sops.yaml").write_text(
        f"keys:\n  users:\n    - &alice {alice.recipient}\n  hosts:\n    - &web {web.recipient}\n"
        "creation_rules:\n  - path_regex: ^secrets/\n    age: [*alice, *web]\n"
    )
    result = repo.ops("recipients", "--json")
    assert result.code == 0, result
    rows = {row["name"]: (row["role"], row["role_from"]) for row in json.loads(result.out)["recipients"]}
    assert rows == {"alice": ("engineer", "listed under users"), "web": ("host", "listed under hosts")}

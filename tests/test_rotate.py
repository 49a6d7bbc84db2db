"""`opssecrets rotate`: real sops on real files, a real HTTP server standing in for Slack."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import AgeKey, OpsRepo, cli_argv, cli_env, run_cli
from guard_support import slack_app, slack_bot
from rotation_support import FakeService, Platform, closed_port_url, fake_server, make_platform, run_in_pty

SECRETS = "secrets/secrets.yaml"


@pytest.fixture
def platform(repo: OpsRepo) -> Platform:
    return make_platform(repo)


def assert_secret_never_shown(value: str, *texts: str) -> None:
    for text in texts:
        assert value not in text


# --- the happy paths ---------------------------------------------------------------------------


def test_rotate_bot_token_from_stdin_verifies_writes_records_and_prints_steps(platform: Platform, slack: FakeService) -> None:
    new = slack_bot()
    slack.valid.add(new)
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", "--reason", "quarterly", stdin=new + "\n")
    assert r.code == 0, r
    assert platform.value("slack-bot-token") == new  # one trailing newline stripped
    assert platform.value("slack-app-token") == platform.tokens["slack-app-token"]  # the rest untouched
    assert slack.requests == [{"method": "POST", "path": "/api/auth.test", "auth": f"Bearer {new}"}]
    assert "Verified: Slack auth.test: workspace chochacho" in r.out
    for needle in ("nixos-rebuild switch", "clarun.xyz", "systemctl restart mautrix-slack", "Hello from Matrix!"):
        assert needle in r.out
    ledger = json.loads((platform.root / ".opssecrets/ledger.json").read_text())
    record = ledger["files"][SECRETS]["keys"]["slack-bot-token"]
    assert record["by"] == "dan" and record["reason"] == "quarterly" and record["exposed"] is False
    assert set(record) == {"rotated_at", "by", "reason", "exposed"}
    assert_secret_never_shown(new, r.out, r.err, json.dumps(ledger))


def test_rotate_app_token_uses_apps_connections_open(platform: Platform, slack: FakeService) -> None:
    new = slack_app()
    slack.valid.add(new)
    r = platform.repo.ops("rotate", "slack-app-token", "--stdin", stdin=new)
    assert r.code == 0, r
    assert platform.value("slack-app-token") == new
    assert [req["path"] for req in slack.requests] == ["/api/apps.connections.open"]
    assert slack.requests[0]["auth"] == f"Bearer {new}"


def test_slack_api_url_option_beats_the_environment(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", closed_port_url())
    with fake_server("/api") as service:
        new = slack_bot()
        service.valid.add(new)
        r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", "--slack-api-url", service.url, stdin=new)
    assert r.code == 0, r
    assert len(service.requests) == 1


def test_generate_matrix_registration_token_non_interactively(platform: Platform) -> None:
    """What the demo runs: no terminal, no network."""
    r = platform.repo.ops_proc("rotate", "matrix-registration-token", "--generate", "--no-verify", stdin="")
    assert r.code == 0, r
    value = platform.value("matrix-registration-token")
    assert value != platform.tokens["matrix-registration-token"]
    assert len(value) == 43 and all(c.isalnum() or c in "-_" for c in value)  # token_urlsafe(32)
    assert "opssecrets verify matrix-registration-token" in r.out
    assert "systemctl restart conduwuit" in r.out
    assert_secret_never_shown(value, r.out, r.err)


def test_generate_is_refused_for_pasted_kinds(platform: Platform) -> None:
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "slack-bot-token", "--generate")
    assert r.code == 2
    assert "come from the provider" in r.err and "--stdin" in r.err
    assert platform.repo.snapshot() == before


def test_nested_key_with_file_option(repo: OpsRepo, slack: FakeService) -> None:
    platform = make_platform(repo)
    repo.encrypt("secrets/bridge.yaml", f"slack:\n  bot_token: {slack_bot()}\n  other: x\n")
    new = slack_bot()
    slack.valid.add(new)
    r = repo.ops("rotate", "slack/bot_token", "--file", "secrets/bridge.yaml", "--stdin", stdin=new)
    assert r.code == 0, r
    assert platform.value("slack/bot_token", "secrets/bridge.yaml") == new
    assert "kind slack-bot-token" in r.out


def test_key_found_in_the_only_file_holding_it(repo: OpsRepo) -> None:
    make_platform(repo)
    repo.encrypt("secrets/forgejo.yaml", "forgejo-db-password: " + secrets.token_urlsafe(12) + "\n")
    r = repo.ops("rotate", "forgejo-db-password", "--generate")
    assert r.code == 0, r
    assert "in secrets/forgejo.yaml (kind generic)" in r.out


def test_file_mode_is_kept_and_no_plaintext_or_staging_left(platform: Platform) -> None:
    path = platform.root / SECRETS
    os.chmod(path, 0o640)
    r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin="ops@clarun.example\n")
    assert r.code == 0, r
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "ops@clarun.example" not in path.read_text()
    assert list((platform.root / ".git/opssecrets").glob("stage-*")) == []
    assert [p.name for p in path.parent.iterdir()] == ["secrets.yaml"]


# --- bad input: one line, documented exit code, nothing changed, value never printed --------


def test_bot_token_pasted_as_app_token_is_refused_saying_which_is_which(platform: Platform, slack: FakeService) -> None:
    before = platform.repo.snapshot()
    wrong = slack_bot()
    r = platform.repo.ops("rotate", "slack-app-token", "--stdin", stdin=wrong)
    assert r.code == 2, r
    assert "looks like a slack-bot-token" in r.err and "xoxb-" in r.err
    assert "slack-app-token" in r.err and "xapp-1-" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert slack.requests == []  # refused before asking anyone
    assert platform.repo.snapshot() == before
    assert_secret_never_shown(wrong, r.out, r.err)


def test_app_token_pasted_as_bot_token_is_refused(platform: Platform) -> None:
    before = platform.repo.snapshot()
    wrong = slack_app()
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=wrong)
    assert r.code == 2
    assert "looks like a slack-app-token" in r.err and "needs a bot user OAuth token starting with xoxb-" in r.err
    assert platform.repo.snapshot() == before
    assert_secret_never_shown(wrong, r.err)


@pytest.mark.parametrize("value", ["not-a-token", "xoxb-", "xoxb-12 34", " xoxb-" + "1-2-abc"])
def test_value_in_the_wrong_format(platform: Platform, value: str) -> None:
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", "--no-verify", stdin=value)
    assert r.code == 2, r
    assert "nothing was changed" in r.err
    assert platform.repo.snapshot() == before


def test_value_slack_rejects_shows_slacks_error(platform: Platform, slack: FakeService) -> None:
    before = platform.repo.snapshot()
    rejected = slack_bot()  # well-formed, but not one the stand-in accepts
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=rejected)
    assert r.code == 2, r
    assert "invalid_auth" in r.err and "not written" in r.err
    # where the value went (printed before the request), then one error line
    lines = r.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("opssecrets: sending the slack-bot-token value to http://127.0.0.1:")
    assert platform.repo.snapshot() == before
    assert_secret_never_shown(rejected, r.out, r.err)


def test_slack_unreachable_names_no_verify_and_changes_nothing(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", closed_port_url())
    before = platform.repo.snapshot()
    new = slack_bot()
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=new)
    assert r.code == 3, r
    assert "could not be reached" in r.err and "--no-verify" in r.err
    assert platform.repo.snapshot() == before
    assert_secret_never_shown(new, r.err)
    # ... and --no-verify is indeed the way out
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", "--no-verify", stdin=new)
    assert r.code == 0, r
    assert "Not verified: --no-verify" in r.out
    assert platform.value("slack-bot-token") == new


def test_slack_answering_500_is_unreachable(platform: Platform, slack: FakeService) -> None:
    slack.status_override = 500
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=slack_bot())
    assert r.code == 3 and "HTTP 500" in r.err and "--no-verify" in r.err
    assert platform.repo.snapshot() == before


def test_expected_workspace_from_repository_policy(platform: Platform, slack: FakeService) -> None:
    platform.repo.write("policies/kinds.toml", '[kinds.slack-bot-token]\nexpected_team = "delpadtech"\n')
    before = platform.repo.snapshot()
    new = slack_bot()
    slack.valid.add(new)
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=new)
    assert r.code == 2, r
    assert "'chochacho'" in r.err and "'delpadtech'" in r.err
    assert platform.repo.snapshot() == before
    platform.repo.write("policies/kinds.toml", '[kinds.slack-bot-token]\nexpected_team = "Chochacho"\n')
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=new)
    assert r.code == 0, r


def test_unknown_key(platform: Platform) -> None:
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "slack-bot-tokn", "--stdin", stdin=slack_bot())
    assert r.code == 2
    assert "no key 'slack-bot-tokn'" in r.err and "slack-bot-token" in r.err
    r = platform.repo.ops("rotate", "nope", "--file", SECRETS, "--stdin", stdin="x")
    assert r.code == 2 and "no key 'nope' in secrets/secrets.yaml" in r.err
    assert platform.repo.snapshot() == before


def test_file_that_is_not_encrypted(platform: Platform) -> None:
    platform.repo.write("notes.yaml", "a: b\n")
    r = platform.repo.ops("rotate", "a", "--file", "notes.yaml", "--stdin", stdin="c")
    assert r.code == 2 and "not a sops-encrypted file" in r.err


def test_file_no_identity_here_can_decrypt(platform: Platform) -> None:
    other = AgeKey.new()
    repo = platform.repo
    repo.write(".sops.yaml", repo.root.joinpath(".sops.yaml").read_text() + "  - path_regex: ^other/\n    age: " + other.recipient + "\n")
    repo.write("other/app.yaml", "api-key: abc\n")
    proc = repo.sops("encrypt", "-i", "other/app.yaml", identity=other)
    assert proc.returncode == 0, proc.stderr
    before = repo.snapshot()
    r = repo.ops("rotate", "api-key", "--file", "other/app.yaml", "--stdin", stdin="new-value-123")
    assert r.code == 3, r
    assert "no identity here can decrypt other/app.yaml" in r.err
    assert repo.snapshot() == before
    assert "new-value-123" not in r.err


def test_empty_value(platform: Platform) -> None:
    before = platform.repo.snapshot()
    for stdin in ("\n", ""):
        r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin=stdin)
        assert r.code == 2, r
        assert "empty" in r.err and "nothing was changed" in r.err
    assert platform.repo.snapshot() == before


def test_stdin_closed(platform: Platform) -> None:
    before = platform.repo.snapshot()
    env = cli_env({"SOPS_AGE_KEY": platform.repo.operator.identity})
    proc = run_cli("rotate", "acme-email", "--stdin", root=platform.root, env=env, cwd=platform.root, timeout=120, closed_stdin=True)
    assert proc.returncode == 2, proc
    assert "stdin is closed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("rotate", "acme-email", root=platform.root, env=env, cwd=platform.root, timeout=120, closed_stdin=True)
    assert proc.returncode == 2, proc
    assert "no terminal to prompt on" in proc.stderr
    assert platform.repo.snapshot() == before


def test_stdin_that_is_not_utf8_is_bad_input_not_a_bug(repo: OpsRepo) -> None:
    """Bytes that are not UTF-8 (a binary file piped in by mistake) reach Python as lone
    surrogates; they are refused with exit 2 and one line, not an internal error (exit 70)."""
    platform = make_platform(repo, {"backup-passphrase": secrets.token_urlsafe(18)})
    before = repo.snapshot()
    value = b"\xff\xfe" + secrets.token_urlsafe(24).encode()
    env = cli_env({"SOPS_AGE_KEY": repo.operator.identity})
    proc = subprocess.run(  # bytes on stdin: run_cli speaks text
        cli_argv("rotate", "backup-passphrase", "--stdin", "--no-verify", root=platform.root),
        input=value,
        env=env,
        cwd=platform.root,
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [
        "opssecrets: error: --stdin: the value is not UTF-8 text (a binary file or another encoding was piped in); "
        "pipe the token as UTF-8 text; nothing was changed"
    ]
    assert repo.snapshot() == before


def test_no_terminal_and_no_stdin_flag(platform: Platform) -> None:
    before = platform.repo.snapshot()
    r = platform.repo.ops_proc("rotate", "slack-bot-token", stdin=slack_bot())
    assert r.code == 2
    assert "no terminal to prompt on" in r.err and "--stdin" in r.err
    assert platform.repo.snapshot() == before


def test_generate_and_stdin_together(platform: Platform) -> None:
    r = platform.repo.ops("rotate", "acme-email", "--generate", "--stdin", stdin="x")
    assert r.code == 2 and "use one" in r.err


def test_same_value_as_before_is_refused(platform: Platform) -> None:
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "slack-bot-token", "--stdin", "--no-verify", stdin=platform.tokens["slack-bot-token"])
    assert r.code == 2 and "same as the current one" in r.err
    assert platform.repo.snapshot() == before
    assert_secret_never_shown(platform.tokens["slack-bot-token"], r.err)


def test_value_is_never_an_argument() -> None:
    from opssecrets.commands.rotate import rotate

    names = {opt for param in rotate.params for opt in getattr(param, "opts", [])}
    assert not {"--value", "--token"} & names
    assert [p.name for p in rotate.params if p.param_type_name == "argument"] == ["key"]


# --- the hidden prompt, for real, on a pseudo-terminal ----------------------------------------


def test_hidden_prompt_on_a_terminal(platform: Platform, slack: FakeService) -> None:
    new = slack_bot()
    slack.valid.add(new)
    env = cli_env({"SOPS_AGE_KEY": platform.repo.operator.identity, "OPSSECRETS_SLACK_API_URL": slack.url})
    code, shown = run_in_pty(cli_argv("rotate", "slack-bot-token", root=platform.root), env, platform.root, answer=new)
    assert code == 0, shown
    assert "OAuth & Permissions" in shown  # where to get it, before the prompt
    assert new not in shown  # not echoed, not printed
    assert platform.value("slack-bot-token") == new


def test_ctrl_c_at_the_prompt(platform: Platform) -> None:
    before = platform.repo.snapshot()
    env = cli_env({"SOPS_AGE_KEY": platform.repo.operator.identity})
    code, shown = run_in_pty(cli_argv("rotate", "slack-bot-token", root=platform.root), env, platform.root, ctrl_c=True)
    assert code == 130, shown
    assert "interrupted; nothing was changed" in shown
    assert platform.repo.snapshot() == before


# --- atomicity: sops failing half-way leaves the file byte-identical ------------------------


FAKE_SOPS = """#!{python}
# Stands in for a sops that crashes during `set` after damaging the file it was given; other
# commands go to the real sops. Every argv is logged, to prove no value is ever in one.
import os, sys
with open({log!r}, "a") as log:
    log.write(repr(sys.argv[1:]) + "\\n")
if "set" in sys.argv and {crash!r}:
    target = sys.argv[-2]
    with open(target, "w") as fh:
        fh.write("half-written")
    sys.stderr.write("sops: simulated crash\\n")
    sys.exit(1)
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def _fake_sops(tmp_path: Path, crash: bool) -> tuple[Path, Path]:
    import shutil

    real = shutil.which("sops")
    assert real
    log = tmp_path / f"sops-argv-{crash}.log"
    script = tmp_path / f"sops-{crash}"
    script.write_text(FAKE_SOPS.format(python=sys.executable, log=str(log), crash=crash, real=real))
    script.chmod(0o755)
    return script, log


def test_sops_failing_mid_write_leaves_the_file_byte_identical(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, _ = _fake_sops(tmp_path, crash=True)
    monkeypatch.setenv("OPSSECRETS_SOPS", str(script))
    before = platform.repo.snapshot()
    r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin="ops@clarun.example")
    assert r.code == 4, r
    assert "sops set secrets/secrets.yaml failed" in r.err
    assert platform.repo.snapshot() == before
    assert not (platform.root / ".opssecrets/ledger.json").exists()


EDITING_SOPS = """#!{python}
# Stands in for someone editing the original file (by hand, another tool) while sops works
# on the staged copy; then the real sops runs.
import os, sys
if "set" in sys.argv:
    with open({original!r}, "a") as fh:
        fh.write("# edited meanwhile\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def test_a_file_edited_during_the_rotation_is_kept(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    original = platform.root / SECRETS
    script = tmp_path / "sops-editing"
    script.write_text(EDITING_SOPS.format(python=sys.executable, original=str(original), real=shutil.which("sops")))
    script.chmod(0o755)
    monkeypatch.setenv("OPSSECRETS_SOPS", str(script))
    edited = original.read_bytes() + b"# edited meanwhile\n"
    r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 2, r
    assert r.err.strip().splitlines()[-1].endswith(f"{SECRETS} changed while this run worked on it; nothing was written, run it again")
    assert original.read_bytes() == edited  # the edit is kept, the staged copy was dropped
    assert not (platform.root / ".opssecrets/ledger.json").exists()
    assert list((platform.root / ".git/opssecrets").glob("stage-*")) == []


def test_value_goes_through_stdin_never_argv(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, log = _fake_sops(tmp_path, crash=False)
    monkeypatch.setenv("OPSSECRETS_SOPS", str(script))
    new = "fresh-value-" + os.urandom(6).hex()
    r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin=new)
    assert r.code == 0, r
    calls = log.read_text()
    assert "'set', '--value-stdin'" in calls
    assert new not in calls
    assert platform.value("acme-email") == new


# --- the data key is rotated first when a reader was removed ---------------------------------


def _old_reader_can_read(repo: OpsRepo, old_file: bytes, alice: AgeKey, key: str) -> bool:
    """Graft the pre-removal ``sops.age`` block (holding alice's wrapped data key) onto the
    current file and ask sops to decrypt it with alice's identity: this works exactly when the
    data key did not change."""
    current = yaml.safe_load((repo.root / SECRETS).read_text())
    old = yaml.safe_load(old_file)
    current["sops"]["age"] = old["sops"]["age"]
    repo.write("grafted.yaml", yaml.safe_dump(current))
    proc = repo.sops("decrypt", "--ignore-mac", "--extract", f'["{key}"]', "grafted.yaml", identity=alice)
    (repo.root / "grafted.yaml").unlink()
    return proc.returncode == 0


def _remove_alice(repo: OpsRepo, *, commit_between: bool = False) -> tuple[AgeKey, bytes]:
    alice = AgeKey.new()
    config = repo.root / ".sops.yaml"
    text = config.read_text()
    with_alice = text.replace("  - &host_clarun", f"  - &alice {alice.recipient}\n  - &host_clarun").replace(
        "          - *host_clarun\n", "          - *host_clarun\n          - *alice\n"
    )
    config.write_text(with_alice)
    assert repo.sops("updatekeys", "-y", SECRETS).returncode == 0
    old_file = (repo.root / SECRETS).read_bytes()
    assert alice.recipient in old_file.decode()
    if commit_between:
        repo.git("commit", "-qam", "add alice")
    config.write_text(text)  # alice leaves: her key is removed from the rules and the file
    assert repo.sops("updatekeys", "-y", SECRETS).returncode == 0
    assert alice.recipient not in (repo.root / SECRETS).read_text()
    return alice, old_file


def test_control_without_data_key_rotation_the_removed_reader_can_read(repo: OpsRepo) -> None:
    """The danger the feature exists for, shown with sops alone (so the next test can fail)."""
    make_platform(repo, commit=False)
    alice, old_file = _remove_alice(repo)
    assert repo.sops("set", SECRETS, '["acme-email"]', '"new@clarun.example"').returncode == 0
    assert _old_reader_can_read(repo, old_file, alice, "acme-email")


def test_exposure_in_the_ledger_rotates_the_data_key_first(repo: OpsRepo) -> None:
    from opssecrets.ledger import mark_exposed

    make_platform(repo, commit=False)
    alice, old_file = _remove_alice(repo)
    mark_exposed(repo.root, SECRETS, ["acme-email", "slack-bot-token"], "alice", operator="dan")
    r = repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0, r
    assert "data key of secrets/secrets.yaml was replaced first (exposed to alice)" in r.out
    assert not _old_reader_can_read(repo, old_file, alice, "acme-email")
    ledger = json.loads((repo.root / ".opssecrets/ledger.json").read_text())
    entry = ledger["files"][SECRETS]
    assert "data_key_rotated_at" in entry
    assert entry["keys"]["acme-email"]["exposed"] is False
    assert entry["keys"]["slack-bot-token"]["exposed"] is True  # only its own rotation clears it
    # the data key is now fresh: the next rotation does not replace it again
    r = repo.ops("rotate", "slack-bot-token", "--stdin", "--no-verify", stdin=slack_bot())
    assert r.code == 0 and "data key" not in r.out


def test_recipient_removed_in_git_history_rotates_the_data_key_first(repo: OpsRepo) -> None:
    make_platform(repo, commit=False)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "platform")
    alice, old_file = _remove_alice(repo, commit_between=True)
    repo.git("commit", "-qam", "remove alice by hand")
    r = repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0, r
    assert "recipient removed since the last data-key rotation" in r.out
    assert not _old_reader_can_read(repo, old_file, alice, "acme-email")


def test_no_removal_no_data_key_rotation(platform: Platform) -> None:
    old = (platform.root / SECRETS).read_text()
    r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0 and "data key" not in r.out
    new = yaml.safe_load((platform.root / SECRETS).read_text())
    # the same data key: the other values' ciphertexts are untouched
    assert new["slack-bot-token"] == yaml.safe_load(old)["slack-bot-token"]


def test_after_remove_engineer_and_commit_no_second_data_key_rotation(repo: OpsRepo) -> None:
    make_platform(repo)
    alice = AgeKey.new()
    assert repo.ops("add-engineer", "alice", "--admin", "--age-key", alice.recipient).code == 0
    repo.git("commit", "-qam", "alice joins")
    old_file = (repo.root / SECRETS).read_bytes()
    assert repo.ops("remove-engineer", "alice").code == 0  # rotates the data key itself
    repo.git("add", "-A")
    repo.git("commit", "-qm", "alice leaves")
    r = repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0, r
    assert "data key" not in r.out  # remove-engineer already replaced it
    assert not _old_reader_can_read(repo, old_file, alice, "acme-email")


def test_reader_added_and_removed_after_the_last_data_key_rotation(repo: OpsRepo) -> None:
    from opssecrets.git import head_commit
    from opssecrets.ledger import record_data_key_rotation
    from opssecrets.secretfile import file_age_recipients

    make_platform(repo)
    record_data_key_rotation(repo.root, SECRETS, readers=file_age_recipients(repo.root / SECRETS), head=head_commit(repo.root))
    repo.git("add", "-A")
    repo.git("commit", "-qm", "ledger")
    alice, old_file = _remove_alice(repo, commit_between=True)
    repo.git("commit", "-qam", "alice leaves (by hand)")
    r = repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0, r
    assert "recipient removed since the last data-key rotation: alice" in r.out
    assert not _old_reader_can_read(repo, old_file, alice, "acme-email")


def test_refused_while_another_run_changes_the_repository(platform: Platform) -> None:
    from opssecrets.repo import Repo
    from opssecrets.transaction import repo_lock

    before = platform.repo.snapshot()
    with repo_lock(Repo(platform.root)):
        r = platform.repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 3 and "another opssecrets run" in r.err
    assert platform.repo.snapshot() == before


def test_stale_staging_from_a_killed_run_is_removed(platform: Platform) -> None:
    stale = platform.root / ".git/opssecrets/stage-killed"
    stale.mkdir(parents=True)
    (stale / "secrets.yaml").write_bytes((platform.root / SECRETS).read_bytes())
    assert platform.repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example").code == 0
    assert not stale.exists()


def test_keys_sops_nix_cannot_name_are_refused(platform: Platform) -> None:
    platform.repo.encrypt("secrets/odd.yaml", 'hosts:\n  - a\n  - b\n"c/d": e\nnested:\n  inner: f\n')
    before = platform.repo.snapshot()
    for key in ("hosts[0]", "c/d"):
        r = platform.repo.ops("rotate", key, "--file", "secrets/odd.yaml", "--stdin", stdin="new-value")
        assert r.code == 2 and "sops-nix cannot name" in r.err, r
    r = platform.repo.ops("rotate", "nested", "--file", "secrets/odd.yaml", "--stdin", stdin="new-value")
    assert r.code == 2 and "no key 'nested'" in r.err  # a mapping, not a value
    assert platform.repo.snapshot() == before
    r = platform.repo.ops("rotate", "nested/inner", "--file", "secrets/odd.yaml", "--stdin", stdin="new-value")
    assert r.code == 0, r


@pytest.mark.parametrize(
    ("rel", "plaintext", "key", "index"),
    [
        ("secrets/app.env", "API_KEY=abc\nOTHER=x\n", "API_KEY", '["API_KEY"]'),
        ("secrets/app.json", '{"db": {"password": "p", "user": "u"}}', "db/password", '["db"]["password"]'),
        ("secrets/app.ini", "[main]\ntoken = t\n", "main/token", '["main"]["token"]'),
    ],
)
def test_other_sops_formats(repo: OpsRepo, rel: str, plaintext: str, key: str, index: str) -> None:
    make_platform(repo)
    repo.encrypt(rel, plaintext)
    new = "fresh-" + secrets.token_hex(8)
    r = repo.ops("rotate", key, "--file", rel, "--stdin", stdin=new)
    assert r.code == 0, r
    proc = repo.sops("decrypt", "--extract", index, rel)
    assert proc.returncode == 0 and proc.stdout.decode() == new


def test_file_is_read_from_the_working_folder_first_as_for_share(platform: Platform) -> None:
    """In secrets/, '--file secrets.yaml' is the file the shell completes there, even though a
    (plain) secrets.yaml also sits at the root; a path from the root still works from there."""
    platform.repo.write("secrets.yaml", "notes: plain\n")
    platform.repo.monkeypatch.chdir(platform.root / "secrets")
    r = platform.repo.ops("rotate", "acme-email", "--file", "secrets.yaml", "--stdin", stdin="x@clarun.example")
    assert r.code == 0, r
    assert platform.value("acme-email") == "x@clarun.example"
    r = platform.repo.ops("rotate", "acme-email", "--file", SECRETS, "--stdin", stdin="y@clarun.example")
    assert r.code == 0, r
    assert platform.value("acme-email") == "y@clarun.example"


def test_file_outside_the_repository_is_refused(platform: Platform) -> None:
    outside = platform.root.parent / "elsewhere.yaml"
    outside.write_bytes((platform.root / SECRETS).read_bytes())
    for given in ("../elsewhere.yaml", str(outside)):
        r = platform.repo.ops("rotate", "acme-email", "--file", given, "--stdin", stdin="x@clarun.example")
        assert r.code == 2 and "outside the repository" in r.err, r

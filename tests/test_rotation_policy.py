"""The secret-kind policy: shipped defaults, a repository's overrides, errors with file and line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from guard_support import slack_app, slack_bot
from rotation_support import PROJECT_ROOT

from opssecrets.errors import BadInput
from opssecrets.policy import default_policy_dir, load_policy


def _repo_policy(tmp_path: Path, text: str, name: str = "kinds.toml") -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    path = tmp_path / "policies" / name
    path.write_text(text)
    return path


def test_default_policy_kinds() -> None:
    policy = load_policy(None)
    assert [k.name for k in policy.kinds] == ["slack-app-token", "slack-bot-token", "matrix-registration-token", "generic"]
    kind_of = {
        key: policy.kind_for_key(key).name
        for key in (
            "slack-app-token",
            "slack/bot_token",
            "slack_bot_token",
            "matrix-registration-token",
            "matrix/registration_token",
            "acme-email",
            "slack-app-token-old",
        )
    }
    assert kind_of == {
        "slack-app-token": "slack-app-token",
        "slack/bot_token": "slack-bot-token",
        "slack_bot_token": "slack-bot-token",
        "matrix-registration-token": "matrix-registration-token",
        "matrix/registration_token": "matrix-registration-token",
        "acme-email": "generic",
        "slack-app-token-old": "generic",  # the key pattern matches the whole key path
    }
    app, bot, matrix, generic = policy.kinds
    assert app.accepts_value(slack_app()) and not app.accepts_value(slack_bot())
    assert bot.accepts_value(slack_bot()) and not bot.accepts_value(slack_app())
    assert app.source == bot.source == "pasted" and matrix.source == "generated" and generic.source == "either"
    assert (app.verify, bot.verify, matrix.verify, generic.verify) == (
        "slack-apps-connections-open",
        "slack-auth-test",
        "matrix-registration-token",
        "none",
    )
    assert matrix.verify_after_deploy and matrix.generate_bytes == 32 and matrix.max_age_days == 90
    assert generic.fallback and generic.max_age_days == 365
    steps = "\n".join(bot.runbook_steps(file="secrets/secrets.yaml", key="slack-bot-token", deploy=policy.platform.deploy))
    for needle in ("nixos-rebuild switch", "clarun.xyz", "mautrix-slack", "Hello from Matrix!"):
        assert needle in steps
    steps = "\n".join(matrix.runbook_steps(file="s.yaml", key="matrix/registration_token", deploy="deploy"))
    assert "conduwuit" in steps and """'["matrix"]["registration_token"]'""" in steps


def test_default_policy_dir_in_a_source_checkout() -> None:
    assert default_policy_dir() == PROJECT_ROOT / "policies"
    assert (default_policy_dir() / "kinds.toml").is_file()


def test_default_policy_dir_when_installed(tmp_path: Path) -> None:
    """Built as setuptools installs it (``policies/`` mapped to ``opssecrets.policies``), the
    policy comes from the package, not from a checkout."""
    import shutil

    source = tmp_path / "src"
    source.mkdir()
    for name in ("opssecrets", "policies"):
        shutil.copytree(PROJECT_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", source)
    (source / "README.md").write_text("x\n")
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(target)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(source)  # nothing of the checkout is left to fall back on
    code = (
        "import opssecrets.policy as p; d = p.default_policy_dir(); pol = p.load_policy(None);"
        "print(d); print(len(pol.kinds)); print(p.__file__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    folder, count, module = proc.stdout.split()
    assert Path(folder) == target / "opssecrets" / "policies"
    assert count == "4" and module.startswith(str(target))


def test_repository_overrides_extends_and_reorders(tmp_path: Path) -> None:
    _repo_policy(
        tmp_path,
        """
[kinds.slack-bot-token]
key_pattern = 'bridge/bot'
max_age_days = 30

[kinds.forgejo-runner-token]
description = "Forgejo Actions runner registration token"
key_pattern = 'forgejo/runner[-_]token'
max_age_days = 60
source = "pasted"
steps = ["Re-register the runner on {host}"]

[platform]
host = "ops.example.org"
""",
    )
    policy = load_policy(tmp_path)
    names = [k.name for k in policy.kinds]
    assert names == ["slack-bot-token", "forgejo-runner-token", "slack-app-token", "matrix-registration-token", "generic"]
    bot = policy.kind_for_key("bridge/bot")
    assert bot.name == "slack-bot-token" and bot.max_age_days == 30
    assert bot.verify == "slack-auth-test" and bot.value_hint.startswith("a bot user OAuth token")  # kept from the default
    assert policy.kind_for_key("slack-bot-token").name == "generic"  # the pattern was replaced
    runner = policy.kind_for_key("forgejo/runner_token")
    assert runner.name == "forgejo-runner-token" and runner.host == "ops.example.org"
    assert runner.runbook_steps(file="f", key="k", deploy="d") == ["Re-register the runner on ops.example.org"]
    assert policy.platform.deploy.startswith("nixos-rebuild")  # not overridden


def test_other_policy_files_without_kinds_are_ignored(tmp_path: Path) -> None:
    _repo_policy(tmp_path, '[[rules]]\nid = "x"\nregex = "abc"\n', name="leaks.toml")
    assert len(load_policy(tmp_path).kinds) == 4


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("[kinds.x]\nkey_pattern = 'a'\nmax_age_days = = 3\n", 3, "invalid TOML"),
        ("# a comment\n\n[kinds.x]\nkey_pattern = 'a'\nmax_age_dayz = 3\n", 5, "kinds.x.max_age_dayz: unknown field"),
        ("[kinds.x]\nkey_pattern = '(unclosed'\n", 2, "kinds.x.key_pattern: not a valid regular expression"),
        ("[kinds.x]\nkey_pattern = 'a'\nmax_age_days = \"ninety\"\n", 3, "kinds.x.max_age_days: must be a whole number"),
        ("[kinds.x]\nkey_pattern = 'a'\nsource = \"clipboard\"\n", 3, "must be one of pasted, generated, either"),
        ("[kinds.x]\nkey_pattern = 'a'\nverify = \"ping\"\n", 3, "kinds.x.verify: must be one of"),
        ("[kinds.x]\nkey_pattern = 'a'\n\nsteps = [\"restart {servise}\"]\n", 4, "bad placeholder"),
        ("\n[kinds.x]\ndescription = 'no pattern'\n", 2, "needs key_pattern"),
        ("[kinds.x]\nkey_pattern = 'a'\nmax_age_days = -1\n", 3, "must be 0 (no maximum) or more"),
        ("[platform]\nhost = 3\n", 2, "platform.host: must be a string"),
    ],
)
def test_malformed_policy_names_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = _repo_policy(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_policy(tmp_path)
    message = caught.value.message
    assert f"policy file {path}, line {line}:" in message, message
    assert needle in message and "\n" not in message


def test_two_fallbacks_are_refused(tmp_path: Path) -> None:
    _repo_policy(tmp_path, "[kinds.other]\nfallback = true\n")
    with pytest.raises(BadInput, match="more than one kind has fallback = true"):
        load_policy(tmp_path)


def test_malformed_policy_through_the_cli(tmp_path: Path, repo: object) -> None:
    from conftest import OpsRepo

    assert isinstance(repo, OpsRepo)
    repo.write("policies/kinds.toml", "[kinds.slack-bot-token]\nmax_age_days = 'x'\n")
    r = repo.ops("status")
    assert r.code == 2
    assert r.err.strip() == (
        f"opssecrets: error: policy file {repo.root}/policies/kinds.toml, line 2: "
        "kinds.slack-bot-token.max_age_days: must be a whole number; fix the file"
    )


def test_the_documented_repository_policy_example_loads(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "docs" / "rotation.md").read_text()
    examples = re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M)
    [kinds_example] = [block for block in examples if "[kinds." in block]
    [notify_example] = [block for block in examples if "[notify]" in block]
    _repo_policy(tmp_path, kinds_example + "\n" + notify_example)
    policy = load_policy(tmp_path)
    assert policy.notify is not None and policy.notify.room == "!ops:clarun.xyz"
    assert policy.kind_for_key("bridge/bot").name == "slack-bot-token"
    assert policy.kind_for_key("bridge/bot").expected_team == "chochacho"
    assert policy.kind_for_key("forgejo/runner_token").max_age_days == 180

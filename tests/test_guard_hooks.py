"""The hooks: the pre-commit hook definition and the plain git hook stop a real commit."""

from __future__ import annotations

import os
import subprocess
import sys

import guard_support as tok
import yaml
from conftest import PROJECT_ROOT, OpsRepo

from opssecrets.cli import COMMANDS


def test_pre_commit_hook_definition() -> None:
    hooks = yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert isinstance(hooks, list)
    assert {hook["id"]: hook["language"] for hook in hooks} == {"opssecrets-check": "python", "opssecrets-check-system": "system"}
    for hook in hooks:
        assert hook["entry"].split() == ["opssecrets", "check"]
        assert "types" not in hook  # binary files under a rule must reach the guard
    assert "check" in COMMANDS


def test_docs_show_three_line_config_and_git_hook() -> None:
    guide = (PROJECT_ROOT / "docs" / "guard.md").read_text()
    assert "id: opssecrets-check" in guide
    assert "opssecrets-check-system" in guide and "pre-commit autoupdate --freeze" in guide
    assert "opssecrets check --staged" in guide
    rule_ids = [
        line.split('"')[1] for line in (PROJECT_ROOT / "policies" / "leaks.toml").read_text().splitlines() if line.startswith("id = ")
    ]
    for rule_id in [
        *rule_ids,
        "sops-unencrypted",
        "sops-plaintext-value",
        "sops-missing-mac",
        "sops-recipient-drift",
        "sops-config-invalid",
        "sops-nix-missing-key",
        "sops-nix-missing-file",
        "known-value",
    ]:
        assert f"`{rule_id}`" in guide, rule_id


def test_plain_git_hook_blocks_a_commit(repo: OpsRepo) -> None:
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\nexec {sys.executable} -m opssecrets check --staged\n")
    hook.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    repo.write("ok.txt", "fine\n")
    repo.git("add", "ok.txt")
    ok = subprocess.run(["git", "commit", "-qm", "ok"], cwd=repo.root, capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    repo.write("bridge.env", f"SLACK_APP_TOKEN={tok.slack_app()}\n")
    repo.git("add", "bridge.env")
    blocked = subprocess.run(["git", "commit", "-qm", "leak"], cwd=repo.root, capture_output=True, text=True, env=env, check=False)
    assert blocked.returncode != 0
    assert "bridge.env:1: slack-app-token:" in blocked.stdout + blocked.stderr
    assert repo.git("log", "--oneline").count("\n") == 1

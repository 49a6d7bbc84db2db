"""The hooks in the real pre-commit framework (PyPI pre-commit).

A repository's ``.pre-commit-config.yaml`` names a git repository holding this project's
current files (committed in a temp dir, so uncommitted work is what is tested) at that
commit's sha. pre-commit clones it and builds the hook's environment itself; its cache
(``PRE_COMMIT_HOME``) stays in the test's temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import guard_support as tok
import pytest
from conftest import PROJECT_ROOT, OpsRepo

pytestmark = pytest.mark.slow

GIT_USER = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]


@dataclass(frozen=True)
class HookRepo:
    path: Path
    sha: str
    cache: Path  # PRE_COMMIT_HOME, shared by the tests in this file so the hook env is built once


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_USER, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> HookRepo:
    """This project's files as git sees them (tracked and untracked-not-ignored, as they are
    on disk now), committed in a fresh repository."""
    base = tmp_path_factory.mktemp("pre-commit")
    clone = base / "opssecrets"
    listed = _git(PROJECT_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, listed):
        source = PROJECT_ROOT / rel
        if source.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / rel)
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-qm", "opssecrets under test")
    return HookRepo(clone, _git(clone, "rev-parse", "HEAD").strip(), base / "cache")


def _configure(repo: OpsRepo, hook_repo: HookRepo, hook_id: str) -> None:
    repo.write(
        ".pre-commit-config.yaml",
        f"repos:\n  - repo: {hook_repo.path}\n    rev: {hook_repo.sha}\n    hooks: [{{id: {hook_id}}}]\n",
    )
    repo.git("add", ".pre-commit-config.yaml")


def _env(hook_repo: HookRepo, path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PRE_COMMIT_HOME=str(hook_repo.cache), PATH=path)
    return env


def _path_without_opssecrets() -> str:
    """PATH minus every folder holding an ``opssecrets`` executable (the venv running the tests)."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and shutil.which("opssecrets", path=f) is None)


def _run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_pre_commit_installs_the_hook_at_a_commit_and_it_stops_a_token(repo: OpsRepo, hook_repo: HookRepo) -> None:
    """`pre-commit install`, then real `git commit`s: a clean change is committed, a staged
    Slack token is refused with the rule's name, and the commit does not happen. pre-commit
    builds the hook's own Python environment: opssecrets is not on PATH."""
    _configure(repo, hook_repo, "opssecrets-check")
    env = _env(hook_repo, _path_without_opssecrets())
    installed = _run(repo.root, env, sys.executable, "-m", "pre_commit", "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    repo.write("notes.txt", "nothing secret here\n")
    repo.git("add", "notes.txt")
    ok = _run(repo.root, env, "git", *GIT_USER, "commit", "-qm", "clean change")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "opssecrets check (plaintext secrets, unencrypted sops files)" in ok.stdout + ok.stderr
    assert "Passed" in ok.stdout + ok.stderr

    repo.write("bridge.env", f"SLACK_APP_TOKEN={tok.slack_app()}\n")
    repo.git("add", "bridge.env")
    blocked = _run(repo.root, env, "git", *GIT_USER, "commit", "-qm", "leak")
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert "Failed" in output
    assert "bridge.env:1: slack-app-token:" in output
    assert repo.git("log", "--format=%s").splitlines() == ["clean change"]


def test_system_hook_runs_the_opssecrets_on_path(repo: OpsRepo, hook_repo: HookRepo) -> None:
    """`opssecrets-check-system` (language: system) installs nothing: with opssecrets on PATH
    it stops a token and passes a clean file; without it, pre-commit says it is missing."""
    _configure(repo, hook_repo, "opssecrets-check-system")
    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which("opssecrets", path=venv_bin), "the test venv has no opssecrets script"
    with_ops = _env(hook_repo, os.pathsep.join([venv_bin, _path_without_opssecrets()]))
    repo.write("notes.txt", "nothing secret here\n")
    repo.git("add", "notes.txt")
    clean = _run(repo.root, with_ops, sys.executable, "-m", "pre_commit", "run")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "opssecrets check (opssecrets on PATH)" in clean.stdout and "Passed" in clean.stdout

    repo.write("bridge.env", f"SLACK_BOT_TOKEN={tok.slack_bot()}\n")
    repo.git("add", "bridge.env")
    blocked = _run(repo.root, with_ops, sys.executable, "-m", "pre_commit", "run")
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "bridge.env:1: slack-bot-token:" in blocked.stdout

    missing = _run(repo.root, _env(hook_repo, _path_without_opssecrets()), sys.executable, "-m", "pre_commit", "run")
    assert missing.returncode != 0
    assert "Executable `opssecrets` not found" in missing.stdout

"""``opssecrets demo``: run end to end with real sops, checked for what a user would notice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, cli_env, run_cli, run_sops, sops_env
from keyring_backends import STORE_VAR

from opssecrets.secretfile import read_secret_file

TESTS = Path(__file__).resolve().parent


def run_demo(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=cli_env(env_extra, with_tests=True), timeout=600)


def run_quick_start_demo(target: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The README's first command exactly as written, from the project folder, with a PATH that
    does not contain the venv (a newcomer who activated nothing): opssecrets must find the sops
    that ``pip install 'opssecrets[sops]'`` put beside its interpreter."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d != venv_bin)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=path, PYTHONPATH=str(TESTS), **env_extra)
    assert shutil.which("sops", path=path) is None, "this test needs a PATH without sops"
    return subprocess.run(
        ["bash", "scripts/demo.sh", str(target)], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=900, check=False
    )


def sops_decrypt(root: Path, rel: str, key_file: Path) -> subprocess.CompletedProcess[bytes]:
    return run_sops("decrypt", rel, cwd=root, env=sops_env({"SOPS_AGE_KEY_FILE": str(key_file)}), timeout=60)


@pytest.fixture
def watched_keyring(tmp_path: Path) -> dict[str, str]:
    """The user's keyring: a real backend that logs every access, holding an identity of theirs."""
    store = tmp_path / "user-keyring.json"
    store.write_text('{"opssecrets": {"age-identity": "not-touched"}}')
    return {"PYTHON_KEYRING_BACKEND": "keyring_backends.RecordingKeyring", STORE_VAR: str(store)}


def test_demo_builds_the_platform_repo_and_runs_the_lifecycle(tmp_path: Path, isolated_home: Path, watched_keyring: dict[str, str]) -> None:
    target = tmp_path / "demo"
    home_before = sorted(p.relative_to(isolated_home).as_posix() for p in isolated_home.rglob("*"))
    result = run_quick_start_demo(target, watched_keyring)
    assert result.returncode == 0, result.stdout + result.stderr

    # the repository a user would open
    assert (target / ".git").is_dir() and (target / ".sops.yaml").is_file()
    host = read_secret_file(target / "secrets" / "secrets.yaml")
    assert host.key_paths() == ["matrix-registration-token", "acme-email", "slack-app-token", "slack-bot-token"]
    assert read_secret_file(target / "secrets" / "projects" / "hello-bot" / "secrets.yaml").key_paths()
    log = subprocess.run(["git", "log", "--oneline"], cwd=target, capture_output=True, text=True, check=True).stdout
    assert "opssecrets demo" in log
    keys = target / ".demo" / "keys"
    for name in ("dan", "alice", "clarun"):
        assert (keys / f"{name}.txt").stat().st_mode & 0o777 == 0o600
    assert (target / ".demo" / "hosts" / "clarun" / "ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    tracked = subprocess.run(["git", "ls-files"], cwd=target, capture_output=True, text=True, check=True).stdout
    assert ".demo" not in tracked and "AGE-SECRET-KEY" not in (target / ".sops.yaml").read_text()

    # real sops: dan and the host (through its converted SSH host key) read the host secrets
    assert sops_decrypt(target, "secrets/secrets.yaml", keys / "dan.txt").returncode == 0
    assert sops_decrypt(target, "secrets/secrets.yaml", keys / "clarun.txt").returncode == 0
    assert sops_decrypt(target, "secrets/secrets.yaml", keys / "alice.txt").returncode != 0

    # the lifecycle, each command printed before it runs
    out = result.stdout
    order = [
        "$ opssecrets init --admin dan",
        "$ opssecrets add-project hello-bot",
        "$ opssecrets add-engineer alice --age-key age1",
        "$ opssecrets access",
        "(as alice) $ opssecrets doctor",
        "$ opssecrets remove-engineer alice",
        "(as alice) $ opssecrets doctor",
    ]
    positions = []
    start = 0
    for line in order:
        start = out.index(line, start) + 1
        positions.append(start)
    assert positions == sorted(positions)

    # alice could read her project's secrets, then could not
    project = "secrets/projects/hello-bot/secrets.yaml"
    first_doctor, second_doctor = out.split("(as alice) $ opssecrets doctor")[1:3]
    assert any(line.startswith(project) and line.split()[-1] == "ok" for line in first_doctor.splitlines())
    assert f"{project}  no" in second_doctor and "reads none of the 2 secret file(s)" in second_doctor
    assert sops_decrypt(target, project, keys / "alice.txt").returncode != 0
    assert sops_decrypt(target, project, keys / "dan.txt").returncode == 0
    # the values she could have copied are named
    assert "alice could read these values" in out and "matrix-access-token" in out

    # the rotation, status and guard steps
    assert "$ opssecrets rotate matrix-registration-token --generate" in out
    assert out.count("$ opssecrets status") == 2 and "EXPOSED" in out
    assert "$ opssecrets check projects/hello-bot/bot.env" in out and "slack-bot-token" in out

    # it ends by saying where the repo is and what to try next
    assert f"The demo repository is at:\n  {target}" in out
    assert "Try next" in out and f"export SOPS_AGE_KEY_FILE={keys / 'dan.txt'}" in out

    # the user's keyring and ~/.config were never touched
    assert not Path(watched_keyring[STORE_VAR] + ".log").exists()
    assert sorted(p.relative_to(isolated_home).as_posix() for p in isolated_home.rglob("*")) == home_before


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    result = run_demo("demo", str(target))
    assert result.returncode == 2, result.stderr
    assert "not empty" in result.stderr and result.stderr.count("\n") == 1
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine\n"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run_demo("demo", str(a_file))
    assert result.returncode == 2
    assert a_file.read_text() == "x"


def test_demo_without_a_directory_makes_a_new_temp_dir(tmp_path: Path) -> None:
    result = run_demo("demo", env_extra={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    made = [p for p in tmp_path.iterdir() if p.name.startswith("opssecrets-demo-")]
    assert len(made) == 1
    assert f"The demo repository is at:\n  {made[0].resolve()}" in result.stdout

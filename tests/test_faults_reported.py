"""Faults of the machine are reported as faults: exit 3 naming the path, or exit 4 naming
the sops step that hung; never exit 70 ("a bug"), never a half-changed repository.

Permission errors are real: the command runs with the kernel's permission checks on. As
root (the CI container) that means without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH,
dropped from the bounding set by ``setpriv`` (util-linux), so a folder mode 0555 refuses
writes as it does for any user. A hung sops is a real program on ``OPSSECRETS_SOPS`` that
sleeps.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AgeKey, OpsRepo, cli_env, run_cli
from tests.fault_support import real_sops

SECRETS = "secrets/secrets.yaml"


def _platform(repo: OpsRepo) -> AgeKey:
    """An ops repository with one encrypted file; returns a key to add as a new engineer."""
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    repo.encrypt(SECRETS, f"db-password: {secrets.token_urlsafe(24)}\n")
    # as in a fresh clone, no state folder yet (init made one for its lock)
    shutil.rmtree(repo.root / ".git" / "opssecrets")
    return AgeKey.new()


def _run(root: Path, *args: str, env: dict[str, str] | None = None, as_a_user: bool = False) -> subprocess.CompletedProcess[str]:
    """opssecrets as a real process; ``as_a_user``: with file permissions enforced, also for root."""
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if as_a_user and os.geteuid() == 0 else []
    return run_cli(*args, root=root, env=cli_env(env), cwd=root, timeout=120, prefix=prefix)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("opssecrets: error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[0]


# --- folders that cannot be written ---------------------------------------------------------


def _add_bob_with_read_only(repo: OpsRepo, folder: Path, bob: AgeKey) -> subprocess.CompletedProcess[str]:
    """``add-engineer bob --admin`` run as a user (no CAP_DAC_OVERRIDE) while ``folder`` is mode 0555."""
    folder.chmod(0o555)
    try:
        return _run(repo.root, "add-engineer", "bob", "--admin", "--age-key", bob.recipient, as_a_user=True)
    finally:
        folder.chmod(0o755)


def test_a_state_folder_that_cannot_be_created_is_exit_3_naming_it(repo: OpsRepo) -> None:
    """.git is read-only (mode 0555): the lock's folder .git/opssecrets cannot be made."""
    bob = _platform(repo)
    before = repo.snapshot()
    git_dir = repo.root / ".git"
    proc = _add_bob_with_read_only(repo, git_dir, bob)
    assert proc.returncode == 3, proc.stderr
    line = _one_error_line(proc)
    assert f"{git_dir / 'opssecrets'}: Permission denied" in line
    assert "Make it writable" in line
    assert repo.snapshot() == before


def test_a_read_only_secrets_folder_is_exit_3_and_changes_nothing(repo: OpsRepo) -> None:
    """The staged, re-encrypted file cannot be renamed into a folder mode 0555: exit 3 naming
    the file, every file byte-identical; made writable, the same command finishes."""
    bob = _platform(repo)
    before = repo.snapshot()
    proc = _add_bob_with_read_only(repo, repo.root / "secrets", bob)
    assert proc.returncode == 3, proc.stderr
    line = _one_error_line(proc)
    assert f"{repo.root / SECRETS}: Permission denied" in line
    assert repo.snapshot() == before
    assert not list((repo.root / ".git" / "opssecrets").glob("stage-*"))
    again = _run(repo.root, "add-engineer", "bob", "--admin", "--age-key", bob.recipient, as_a_user=True)
    assert again.returncode == 0, again.stderr
    assert repo.decrypt(SECRETS, identity=bob).returncode == 0


def test_a_file_where_the_state_folder_should_be_is_exit_3(tmp_path: Path, operator: AgeKey, repo: OpsRepo) -> None:
    """Outside git the state folder is .opssecrets/run; a regular file named .opssecrets
    makes it impossible to create (ENOTDIR)."""
    bob = _platform(repo)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / ".sops.yaml").write_bytes((repo.root / ".sops.yaml").read_bytes())
    (plain / "secrets").mkdir()
    (plain / SECRETS).write_bytes((repo.root / SECRETS).read_bytes())
    (plain / ".opssecrets").write_text("not a folder\n")
    before = {p.name: p.read_bytes() for p in plain.rglob("*") if p.is_file()}
    proc = _run(plain, "add-engineer", "bob", "--admin", "--age-key", bob.recipient)
    assert proc.returncode == 3, proc.stderr
    line = _one_error_line(proc)
    assert f"{plain / '.opssecrets' / 'run'}: Not a directory" in line
    assert {p.name: p.read_bytes() for p in plain.rglob("*") if p.is_file()} == before


def test_a_file_where_the_git_state_folder_should_be_is_exit_3(repo: OpsRepo) -> None:
    bob = _platform(repo)
    before = repo.snapshot()
    state = repo.root / ".git" / "opssecrets"
    state.write_text("not a folder\n")
    proc = _run(repo.root, "add-engineer", "bob", "--admin", "--age-key", bob.recipient)
    assert proc.returncode == 3, proc.stderr
    assert f"the state folder {state} cannot be created: a file is in the way" in _one_error_line(proc)
    assert repo.snapshot() == before


# --- a hung sops and the command's deadline -----------------------------------------------------

HUNG_SOPS = """#!/bin/sh
# Test stand-in for a sops that hangs (a key service that never answers) on one subcommand.
case " $* " in *" --version "*) exec "{real}" "$@";; esac
case " $* " in
  *" {hang_on} "*) echo $$ >> "{pids}"; exec sleep 300;;
esac
exec "{real}" "$@"
"""


def _hung_sops(tmp_path: Path, hang_on: str) -> tuple[Path, Path]:
    pids = tmp_path / "hung-pids"
    script = tmp_path / "hung-sops"
    script.write_text(HUNG_SOPS.format(real=real_sops(), hang_on=hang_on, pids=pids))
    script.chmod(0o755)
    return script, pids


def _assert_stopped(pids: Path) -> None:
    """The hung child was killed (and reaped): its pid no longer exists."""
    started = [int(line) for line in pids.read_text().split()]
    assert started
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_timeout_option_stops_a_hung_sops_and_names_the_file_and_step(repo: OpsRepo, tmp_path: Path) -> None:
    bob = _platform(repo)
    before = repo.snapshot()
    sops, pids = _hung_sops(tmp_path, "updatekeys")
    args = ("--timeout", "2", "add-engineer", "bob", "--admin", "--age-key", bob.recipient)
    proc = _run(repo.root, *args, env={"OPSSECRETS_SOPS": str(sops)})
    assert proc.returncode == 4, proc.stderr
    assert _one_error_line(proc) == (
        f"opssecrets: error: sops updatekeys {SECRETS} was still running when the command's deadline (2s) passed; "
        "it was stopped and nothing was changed. Check for a hung key service or lock, or give more time with "
        "--timeout or OPSSECRETS_TIMEOUT"
    )
    _assert_stopped(pids)
    assert repo.snapshot() == before
    assert not list((repo.root / ".git" / "opssecrets").glob("stage-*"))


def test_timeout_from_the_environment_covers_a_later_step(repo: OpsRepo, tmp_path: Path) -> None:
    """rotate's first sops calls (decrypt the current value) work; `sops set` on the staged
    copy hangs: the deadline from OPSSECRETS_TIMEOUT stops it and names the real file."""
    _platform(repo)
    before = repo.snapshot()
    sops, pids = _hung_sops(tmp_path, "set")
    proc = run_cli(
        "rotate", "db-password", "--stdin", "--no-verify",
        root=repo.root,
        env=cli_env({"OPSSECRETS_SOPS": str(sops), "OPSSECRETS_TIMEOUT": "3"}),
        stdin=secrets.token_urlsafe(24),
        cwd=repo.root,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    line = _one_error_line(proc)
    assert line.startswith(f"opssecrets: error: sops set {SECRETS} was still running when the command's deadline (3s) passed")
    _assert_stopped(pids)
    assert {k: v for k, v in repo.snapshot().items() if not k.startswith(".opssecrets/")} == before


def test_timeout_must_be_positive(repo: OpsRepo) -> None:
    proc = _run(repo.root, "--timeout", "0", "status")
    assert proc.returncode == 2
    assert "--timeout" in proc.stderr

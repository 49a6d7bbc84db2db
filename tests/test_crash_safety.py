"""A kill at any moment leaves every file old or new, and running again finishes the job."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, AgeKey

FILES = 20


def _env(identity: AgeKey) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY"] = identity.identity
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def _build(base: Path, dan: AgeKey, eve: AgeKey) -> None:
    (base / "secrets").mkdir(parents=True)
    (base / ".sops.yaml").write_text(
        f"keys:\n  - &admin_dan {dan.recipient}\n  - &admin_eve {eve.recipient}\ncreation_rules:\n"
        "  - path_regex: ^secrets/\n    key_groups:\n      - age:\n          - *admin_dan\n          - *admin_eve\n"
    )
    env = _env(dan)
    for i in range(FILES):
        rel = f"secrets/s{i:02d}.yaml"
        (base / rel).write_text(f"token: value-{i:02d}\n")
        subprocess.run(["sops", "--disable-version-check", "encrypt", "-i", rel], cwd=base, env=env, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q"], cwd=base, check=True)


def _run(repo: Path, env: dict[str, str], kill_after: float | None) -> int | None:
    cmd = [sys.executable, "-m", "opssecrets", "--repo", str(repo), "remove-engineer", "eve"]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return proc.wait(timeout=120)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return None


def _decrypts_to_its_content(repo: Path, env: dict[str, str], i: int) -> bool:
    out = subprocess.run(["sops", "--disable-version-check", "decrypt", f"secrets/s{i:02d}.yaml"], cwd=repo, env=env, capture_output=True)
    return out.returncode == 0 and out.stdout == f"token: value-{i:02d}\n".encode()


def _all_decrypt(repo: Path, env: dict[str, str]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: _decrypts_to_its_content(repo, env, i), range(FILES)))


@pytest.mark.slow
def test_sigkill_during_remove_engineer_never_leaves_a_broken_file(tmp_path: Path) -> None:
    dan, eve = AgeKey.new(), AgeKey.new()
    base = tmp_path / "base"
    _build(base, dan, eve)
    env = _env(dan)
    old_config = (base / ".sops.yaml").read_text()

    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    start = time.perf_counter()
    assert _run(reference, env, None) == 0
    duration = time.perf_counter() - start
    new_config = (reference / ".sops.yaml").read_text()

    rng = random.Random(20261126)
    kills = 8
    for n in range(kills):
        repo = tmp_path / f"run{n}"
        shutil.copytree(base, repo)
        _run(repo, env, rng.uniform(0.05, duration))
        assert (repo / ".sops.yaml").read_text() in (old_config, new_config)
        assert _all_decrypt(repo, env) == [True] * FILES, f"kill {n}: a file is broken"
        # run again: it finishes the job (or finds it finished, when only cleanup was left)
        code = _run(repo, env, None)
        if (repo / ".sops.yaml").read_text() == new_config and code != 0:
            assert code == 2  # "no recipient named eve": the config was already written, last
        assert (repo / ".sops.yaml").read_text() == new_config
        assert _all_decrypt(repo, env) == [True] * FILES
        assert _all_decrypt(repo, _env(eve)) == [False] * FILES, f"kill {n}: eve still reads a file"

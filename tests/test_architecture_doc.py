"""docs/architecture.md stays true: every path it names exists, every module is described."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:opssecrets|policies|tests|docs)/[A-Za-z0-9_./-]*)`")


def named_paths() -> list[str]:
    return sorted(set(PATH.findall(DOC.read_text())))


def test_every_named_path_exists() -> None:
    paths = named_paths()
    assert len(paths) >= 40
    missing = [p for p in paths if not (PROJECT_ROOT / p).exists()]
    assert missing == [], f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_module_is_named() -> None:
    text = DOC.read_text()
    modules = [
        p.relative_to(PROJECT_ROOT).as_posix()
        for p in sorted((PROJECT_ROOT / "opssecrets").rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py")
    ]
    folders = ("opssecrets/verify/",)  # described as a whole
    unnamed = [m for m in modules if f"`{m}`" not in text and not m.startswith(folders)]
    assert unnamed == [], f"add these modules to docs/architecture.md: {unnamed}"


def test_named_functions_exist() -> None:
    """Functions the command walk-through names are still there, in the modules it says."""
    text = DOC.read_text()
    for module, name in (
        ("opssecrets/transaction.py", "def repo_lock"),
        ("opssecrets/transaction.py", "def plan_files"),
        ("opssecrets/transaction.py", "def apply"),
        ("opssecrets/fsio.py", "def write_atomic"),
        ("opssecrets/sops.py", "def classify_sops_failure"),
        ("opssecrets/rotation.py", "def run_verifier"),
        ("opssecrets/rules.py", "def matching_rule"),
        ("opssecrets/commands/common.py", "def show_plan"),
    ):
        assert name.split()[1] in text
        assert name in (PROJECT_ROOT / module).read_text(), (module, name)


def test_security_doc_names_real_tests() -> None:
    """Every test docs/security.md cites (``tests/x.py::test_y`` or ``::test_y`` after it) exists."""
    text = (PROJECT_ROOT / "docs" / "security.md").read_text()
    cited: list[tuple[str, str | None]] = []
    current = ""
    for match in re.finditer(r"`(tests/[a-z_]+\.py)?(?:::(test_[a-z0-9_]+))?`", text):
        module, name = match.group(1), match.group(2)
        if module:
            current = module
        if current and (module or name):
            cited.append((current, name))
    assert len(cited) >= 20
    for module, name in cited:
        source = (PROJECT_ROOT / module).read_text()
        assert name is None or f"def {name}(" in source, f"docs/security.md cites {module}::{name}, which does not exist"

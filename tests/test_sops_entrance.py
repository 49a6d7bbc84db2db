"""opssecrets/sops.py is the only module that runs the sops binary.

Everything else asks a public method of ``Sops`` (decrypt, decrypt_data, can_decrypt,
extract, encrypt, updatekeys, rotate): each classifies sops' failures the one way, redacts
what it is told to, keeps the recipient variables out of the child and honours the
command's deadline. A second door (the raw ``_call``, ``run`` handed the sops binary, a
``subprocess`` naming sops) would skip some of that, so this scan refuses it. ``run`` stays
open to other modules for age only: its binary must come from ``find_age()``.
"""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import PROJECT_ROOT, library_sources

ENTRANCE = "opssecrets/sops.py"

# Modules that may name find_sops, and why: the doctor reports which sops it found and its
# version (find_sops runs `sops --version` inside sops.py); it runs nothing itself.
MAY_FIND_SOPS = frozenset({"opssecrets/doctor.py"})


_STARTS_PROCESSES = {
    "subprocess": {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"},
    "os": {"system", "popen", "posix_spawn", "posix_spawnp"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
    "pty": {"spawn"},
}


def _starts_process(func: ast.expr) -> bool:
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return False
    module, name = func.value.id, func.attr
    if module == "os" and name.startswith(("exec", "spawn")):
        return True
    return name in _STARTS_PROCESSES.get(module, set())


def _names_sops(node: ast.AST) -> bool:
    """``node`` holds the sops program: its name, its finder, or a Sops' binary."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and re.search(r"(^|/)sops(\s|$)", sub.value.strip()):
            return True
        if isinstance(sub, ast.Name) and sub.id == "find_sops":
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in ("find_sops", "binary"):
            return True
    return False


def _is_find_age_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "find_age") or (isinstance(func, ast.Attribute) and func.attr == "find_age")


def _is_self(node: ast.expr) -> bool:
    """``self._call`` outside sops.py is that class's own method (the Slack client has one), not Sops'."""
    return isinstance(node, ast.Name) and node.id == "self"


def _subcommand(call: ast.Call) -> str:
    first = call.args[0] if call.args else None
    if isinstance(first, (ast.Tuple, ast.List)) and first.elts and isinstance(first.elts[0], ast.Constant):
        return f"_call({first.elts[0].value!r}, ...)"
    return "_call(...)"


def side_doors(source: str) -> list[str]:
    """Every way ``source`` runs sops other than through a public ``Sops`` method: "line N: what" each."""
    tree = ast.parse(source)
    run_names: set[str] = set()  # local names bound to opssecrets.sops.run
    sops_modules: set[str] = set()  # local names bound to the opssecrets.sops module
    age_names: set[str] = set()
    other_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "opssecrets.sops":
            run_names |= {alias.asname or alias.name for alias in node.names if alias.name == "run"}
        elif isinstance(node, ast.ImportFrom) and node.module == "opssecrets":
            sops_modules |= {alias.asname or alias.name for alias in node.names if alias.name == "sops"}
        elif isinstance(node, ast.Import):
            sops_modules |= {alias.asname for alias in node.names if alias.name == "opssecrets.sops" and alias.asname}
        elif isinstance(node, ast.Assign):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            (age_names if _is_find_age_call(node.value) else other_names).update(targets)
    age_names -= other_names
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}: "
        if isinstance(node, ast.Call):
            func = node.func
            through_module = isinstance(func, ast.Attribute) and (
                (isinstance(func.value, ast.Name) and func.value.id in sops_modules) or ast.unparse(func.value) == "opssecrets.sops"
            )
            is_run = (isinstance(func, ast.Name) and func.id in run_names) or (through_module and func.attr == "run")
            if is_run:
                first = node.args[0] if node.args else None
                if first is None or not (_is_find_age_call(first) or (isinstance(first, ast.Name) and first.id in age_names)):
                    found.append(f"{where}run() with a binary that is not find_age()'s")
            elif isinstance(func, ast.Attribute) and func.attr == "_call" and not _is_self(func.value):
                found.append(f"{where}{_subcommand(node)}")
            elif _starts_process(func) and _names_sops(node):
                found.append(f"{where}{ast.unparse(func)}() naming sops")
            elif isinstance(func, ast.Attribute) and func.attr == "which" and _names_sops(node):
                found.append(f"{where}shutil.which('sops')")
        if (
            (isinstance(node, ast.Name) and node.id == "find_sops")
            or (isinstance(node, ast.alias) and node.name == "find_sops")
            or (isinstance(node, ast.Attribute) and node.attr == "find_sops")
        ):
            found.append(f"{where}find_sops")
    return found


def _allowed(module: str, hit: str) -> bool:
    what = hit.split(": ", 1)[1]
    return (what == "find_sops" and module in MAY_FIND_SOPS)


def test_only_sops_py_runs_sops() -> None:
    modules = library_sources()
    assert len(modules) > 40
    offenders = [
        f"{module}: {hit}"
        for module, source in modules.items()
        if module != ENTRANCE
        for hit in side_doors(source)
        if not _allowed(module, hit)
    ]
    assert offenders == [], (
        "run sops through a public method of opssecrets.sops.Sops (add one there if none fits); "
        f"run() outside sops.py is for age, with find_age()'s binary: {offenders}"
    )


def test_the_entrance_itself_is_found() -> None:
    """The scan sees what sops.py does, so it would see a copy anywhere else (its methods call
    ``self._call``, which a module that uses Sops never does; shown here as ``sops._call``)."""
    source = (PROJECT_ROOT / ENTRANCE).read_text(encoding="utf-8")
    hits = [hit.split(": ", 1)[1] for hit in side_doors(source.replace("self._call(", "sops._call("))]
    assert "_call('decrypt', ...)" in hits
    assert "_call('rotate', ...)" in hits
    assert "find_sops" in hits


@pytest.mark.parametrize(
    "source",
    [
        "from opssecrets.sops import find_sops, run\nrun(find_sops(), ('decrypt', 'a.yaml'), cwd=root)",
        "from opssecrets.sops import run as go\ngo(repo.sops.binary, ('decrypt', 'a.yaml'), cwd=root)",
        "from opssecrets import sops\nsops.run(binary, ('decrypt', 'a.yaml'), cwd=root)",
        "import opssecrets.sops as s\ns.run(repo.sops.binary, ('decrypt', 'a.yaml'), cwd=root)",
        "from opssecrets.sops import find_age, run\nage = find_age()\nage = other\nrun(age, ('-d',), cwd=root)",
        "repo.sops._call(('decrypt', 'a.yaml'), discard_stdout=True)",
        "import subprocess\nsubprocess.run(['sops', 'decrypt', 'a.yaml'], check=False)",
        "import subprocess\nsubprocess.run([repo.sops.binary.path, 'decrypt', 'a.yaml'], check=False)",
        "import subprocess\nsubprocess.Popen('sops decrypt a.yaml', shell=True)",
        "import os\nos.execvp('sops', ['sops', 'decrypt', 'a.yaml'])",
        "import os\nos.system('/usr/bin/sops decrypt a.yaml')",
        "import shutil\npath = shutil.which('sops')",
        "from opssecrets.sops import find_sops\npath = find_sops().path",
        "import opssecrets.sops\nopssecrets.sops.run(binary, ('decrypt', 'a.yaml'), cwd=root)",
        "from opssecrets import sops\nbinary = sops.find_sops()",
    ],
)
def test_a_side_door_is_refused(source: str) -> None:
    assert side_doors(source) != []


def test_the_surface_and_age_stay_usable() -> None:
    source = (
        "from opssecrets.sops import child_env, find_age, run\n"
        "age = find_age()\n"
        "run(age, ('-r', recipient, '-a'), cwd=root, stdin=value, env=child_env())\n"
        "run(find_age(), ('-d',), cwd=root)\n"
        "value = repo.sops.extract('a.yaml', 'slack/bot_token', redact=(new,))\n"
        "ok = repo.sops.can_decrypt('a.yaml').opens\n"
        "import subprocess\nsubprocess.run(['git', 'status'], check=False)\n"
    )
    assert side_doors(source) == []

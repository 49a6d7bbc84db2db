"""opssecrets/yamllimits.py is the only entrance to PyYAML's (and ruamel's) parsers.

libyaml crashes the whole process on deep nesting (see yamllimits.py); a parse that skips
the depth check brings the crash back. So no module but yamllimits.py may reach a loader,
a parser or a composer: others import ``yaml`` only for its error, node and event types.
"""

from __future__ import annotations

import ast

import pytest

from opssecrets import yamllimits
from tests.conftest import PROJECT_ROOT, library_sources

ENTRANCE = "opssecrets/yamllimits.py"

# What a module other than yamllimits.py may take from PyYAML: types to catch or to test
# with isinstance, and the emitters (writing YAML parses no untrusted text).
ALLOWED = frozenset(
    {
        "YAMLError",
        "MarkedYAMLError",
        "Mark",
        "Node",
        "ScalarNode",
        "CollectionNode",
        "SequenceNode",
        "MappingNode",
        "Event",
        "ScalarEvent",
        "AliasEvent",
        "SequenceStartEvent",
        "SequenceEndEvent",
        "MappingStartEvent",
        "MappingEndEvent",
        "DocumentStartEvent",
        "DocumentEndEvent",
        "StreamStartEvent",
        "StreamEndEvent",
        "dump",
        "dump_all",
        "safe_dump",
        "safe_dump_all",
        "__version__",
    }
)
ALLOWED_RUAMEL = ("ruamel.yaml.error",)  # its YAMLError, to catch


def _is_yaml_module(name: str) -> bool:
    return name == "yaml" or name.startswith("yaml.")


def _is_ruamel(name: str) -> bool:
    return name == "ruamel" or name.startswith("ruamel.")


def entrances(source: str) -> list[str]:
    """Every way ``source`` reaches a YAML parser: "line N: what" each."""
    tree = ast.parse(source)
    yaml_names: set[str] = set()  # local names bound to the yaml module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "yaml":
                    yaml_names.add(alias.asname or "yaml")
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}: "
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (_is_yaml_module(alias.name) and alias.name != "yaml") or (
                    _is_ruamel(alias.name) and not alias.name.startswith(ALLOWED_RUAMEL)
                ):
                    found.append(f"{where}import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if _is_ruamel(node.module) and not node.module.startswith(ALLOWED_RUAMEL):
                found.append(f"{where}from {node.module} import ...")
            elif node.module == "yaml":
                found += [f"{where}from yaml import {a.name}" for a in node.names if a.name not in ALLOWED]
            elif _is_yaml_module(node.module):
                found.append(f"{where}from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in yaml_names:
            if node.attr not in ALLOWED:
                found.append(f"{where}{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) and node.args:
            first = node.args[0]
            called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if called == "getattr" and isinstance(first, ast.Name) and first.id in yaml_names:
                found.append(f"{where}getattr({first.id}, ...)")
            if (
                called in ("__import__", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and (_is_yaml_module(first.value) or _is_ruamel(first.value))
            ):
                found.append(f"{where}{called}({first.value!r})")
    return found


def test_only_yamllimits_enters_pyyaml() -> None:
    modules = library_sources()
    assert len(modules) > 40
    offenders = [f"{module}: {hit}" for module, source in modules.items() if module != ENTRANCE for hit in entrances(source)]
    assert offenders == [], (
        "parse YAML through opssecrets.yamllimits (safe_load, safe_load_all, compose_all, events, "
        f"round_trip_events), which refuses nesting that crashes libyaml: {offenders}"
    )


def test_the_entrance_itself_is_found() -> None:
    """The scan sees the entrances yamllimits.py uses, so it would see a copy anywhere else."""
    hits = entrances((PROJECT_ROOT / ENTRANCE).read_text(encoding="utf-8"))
    assert any("yaml.load" in hit for hit in hits)
    assert any("yaml.compose_all" in hit for hit in hits)
    assert any("yaml.parse" in hit for hit in hits)
    assert any("getattr(yaml" in hit for hit in hits)
    assert any("yaml._yaml" in hit for hit in hits)
    assert any("ruamel.yaml" in hit for hit in hits)


@pytest.mark.parametrize(
    "source",
    [
        "import yaml\nyaml.safe_load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.CSafeLoader)",
        "import yaml as y\ny.compose_all(text)",
        "import yaml\nloader = getattr(yaml, 'CSafeLoader', None)",
        "from yaml import safe_load_all",
        "from yaml.cyaml import CParser",
        "import yaml._yaml",
        "from ruamel.yaml import YAML",
        "import importlib\nimportlib.import_module('yaml')",
    ],
)
def test_a_side_door_is_refused(source: str) -> None:
    assert entrances(source) != []


def test_types_and_errors_stay_usable() -> None:
    source = (
        "import yaml\nfrom ruamel.yaml.error import YAMLError\n"
        "try:\n    pass\nexcept yaml.YAMLError:\n    pass\nisinstance(n, yaml.ScalarNode)\nisinstance(e, yaml.ScalarEvent)\n"
    )
    assert entrances(source) == []


DEEP = "key:\n" + "  - " * 200 + "x\n"  # compact sequences past the limit: the libyaml crash shape


@pytest.mark.parametrize(
    "entrance",
    [
        yamllimits.safe_load,
        yamllimits.safe_load_all,
        yamllimits.compose_all,
        yamllimits.events,
        yamllimits.round_trip_events,
    ],
)
def test_every_entrance_refuses_deep_nesting_before_parsing(entrance: object) -> None:
    assert callable(entrance)
    with pytest.raises(yamllimits.TooDeep, match="line 2: nested more than 64 levels deep"):
        entrance(DEEP)  # eagerly: a caller that never iterates is protected too


def test_entrances_parse_what_they_are_given() -> None:
    text = "a: &k 1\nb: [x, *k]\n---\nc: 2\n"
    assert yamllimits.safe_load("a: [1, {b: c}]\n") == {"a": [1, {"b": "c"}]}
    assert list(yamllimits.safe_load_all(text)) == [{"a": 1, "b": ["x", 1]}, {"c": 2}]
    assert [type(node).__name__ for node in yamllimits.compose_all(text)] == ["MappingNode", "MappingNode"]
    anchors = [e.anchor for e in yamllimits.events(text) if type(e).__name__ == "ScalarEvent" and e.anchor]
    assert anchors == ["k"]
    kinds = [type(e).__name__ for e in yamllimits.round_trip_events(text)]
    assert kinds.count("AliasEvent") == 1 and kinds.count("DocumentStartEvent") == 2

"""Refuse absurdly nested YAML before any parser sees it.

Both YAML parsers we use break on nesting no real file has: ruamel's scanner and libyaml
(PyYAML's C loader) take time quadratic in flow nesting (``[[[[...``), and PyYAML's C
loader crashes the whole process with a segmentation fault on deep compact sequences
(``- - - - ...``, 400 KB is enough). Files in a repository are untrusted input to the
guard, so every YAML parse of one is preceded by this check, which runs at regex speed
(no Python loop per character: a 10 MB file costs a few tens of milliseconds).

The parse entrances at the end of this module are the only way opssecrets reaches a YAML
parser, so the check cannot be forgotten (tests/test_yaml_entrance.py enforces it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 64  # a .sops.yaml or a secrets file is a few levels deep

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"[\[{][\]}]")
_OPEN_RUN = re.compile(rf"[\[{{]{{{MAX_DEPTH + 1}}}")
_COMPACT = re.compile(rf"^[ \t]*(?:[-?:][ \t]+){{{MAX_DEPTH + 1},}}", re.MULTILINE)


class TooDeep(ValueError):
    """YAML nested past MAX_DEPTH levels; ``where`` is ``"line N: "`` when known, else ``""``."""

    def __init__(self, where: str) -> None:
        super().__init__(f"{where}nested more than {MAX_DEPTH} levels deep")
        self.where = where


def _line(text: str, index: int) -> str:
    return f"line {text.count(chr(10), 0, index) + 1}: "


def _flow_too_deep(text: str) -> bool:
    """Whether ``[``/``{`` nest past MAX_DEPTH (brackets in quotes and comments count too:
    a real file never comes near the limit). Each pass drops the innermost pairs, so a
    normal file needs as many passes as its depth."""
    brackets = _NOT_BRACKET.sub("", text)
    if brackets.count("[") + brackets.count("{") <= MAX_DEPTH:
        return False
    for _ in range(MAX_DEPTH):
        reduced = _PAIR.sub("", brackets)
        if reduced == brackets:
            break
        brackets = reduced
    # left: a pair still nested deeper than MAX_DEPTH, or unclosed brackets ("]]][[[")
    return _PAIR.search(brackets) is not None or brackets.count("[") + brackets.count("{") > MAX_DEPTH


def too_deep(text: str) -> str | None:
    """None when nesting stays within MAX_DEPTH; else where it does not (``"line N: "`` or ``""``)."""
    compact = _COMPACT.search(text)
    if compact is not None:
        return _line(text, compact.start())
    if _flow_too_deep(text):
        run = _OPEN_RUN.search(text)
        return _line(text, run.start()) if run is not None else ""
    return None


def check_depth(text: str) -> None:
    """Raise TooDeep when :func:`too_deep` objects."""
    where = too_deep(text)
    if where is not None:
        raise TooDeep(where)


# -- the only entrances to PyYAML (and ruamel's parser) in opssecrets ------------------------------
# Every parse of text goes through one of these, so none can forget the depth check above
# (tests/test_yaml_entrance.py fails on a PyYAML load or parse anywhere else). Each checks
# the depth eagerly, then hands back the parser's own result or lazy iterator, so callers
# see PyYAML's values, nodes, events and errors (yaml.YAMLError) exactly as before.


def _safe_loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: fast


def safe_load(text: str) -> Any:
    """The one document of ``text`` as plain data (``yaml.safe_load``, C loader when present);
    raises TooDeep before the parser could crash, yaml.YAMLError for invalid YAML."""
    import yaml

    check_depth(text)
    return yaml.load(text, Loader=_safe_loader())  # noqa: S506 - a safe loader


def safe_load_all(text: str) -> Iterator[Any]:
    """Every document of ``text`` as plain data (lazily, as ``yaml.safe_load_all``)."""
    import yaml

    check_depth(text)
    return yaml.load_all(text, Loader=_safe_loader())


def compose_all(text: str) -> Iterator[Any]:
    """Every document of ``text`` as PyYAML nodes (with marks: line numbers, styles)."""
    import yaml

    check_depth(text)
    return yaml.compose_all(text, Loader=_safe_loader())


def events(text: str) -> Iterator[Any]:
    """PyYAML's event stream of ``text`` (``yaml.parse``, C parser when present)."""
    import yaml

    check_depth(text)
    return yaml.parse(text, Loader=_safe_loader())


def round_trip_events(text: str) -> Iterator[Any]:
    """The event stream yamltree edits ``.sops.yaml`` from: libyaml's (PyYAML's C parser)
    when present, else ruamel.yaml's round-trip parser.

    libyaml is the C library go-yaml (sops' parser) was ported from, so it reads anchors
    the way sops does (``&users:`` is ``&users`` then ``:``), and it is about twenty times
    faster: a large real config (hundreds of KB) is edited in well under a second per
    change instead of a minute. Both report character offsets for every event. Errors are
    PyYAML's or ruamel's YAMLError."""
    check_depth(text)
    return _round_trip_events(text)


def _round_trip_events(text: str) -> Iterator[Any]:
    try:
        from yaml._yaml import CParser
    except ImportError:
        from ruamel.yaml import YAML

        yield from YAML(typ="rt").parse(text)
        return
    parser = CParser(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    finally:
        parser.dispose()

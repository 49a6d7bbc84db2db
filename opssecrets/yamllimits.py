"""Refuse absurdly nested YAML before any parser sees it.

Both YAML parsers we use break on nesting no real file has: ruamel's scanner and libyaml
(PyYAML's C loader) take time quadratic in flow nesting (``[[[[...``), and PyYAML's C
loader crashes the whole process with a segmentation fault on deep compact sequences
(``- - - - ...``, 400 KB is enough). Files in a repository are untrusted input to the
guard, so every YAML parse of one is preceded by this check, which runs at regex speed
(no Python loop per character: a 10 MB file costs a few tens of milliseconds).
"""

from __future__ import annotations

import re

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

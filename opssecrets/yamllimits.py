"""Refuse absurdly nested YAML before any parser sees it.

Both YAML parsers we use break on nesting no real file has: ruamel's scanner and libyaml
(PyYAML's C loader) take time quadratic in flow nesting (``[[[[...``), and PyYAML's C
loader crashes the whole process with a segmentation fault on deep compact sequences
(``- - - - ...``, 400 KB is enough). Files in a repository are untrusted input to the
guard, so every YAML parse of one is preceded by this linear check.
"""

from __future__ import annotations

import re

MAX_DEPTH = 64  # a .sops.yaml or a secrets file is a few levels deep

_BRACKETS = re.compile(r"[\[\]{}]")
_COMPACT = re.compile(rf"^[ \t]*(?:[-?:][ \t]+){{{MAX_DEPTH + 1},}}", re.MULTILINE)


class TooDeep(ValueError):
    """YAML nested past MAX_DEPTH levels; ``line`` is 1-based."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line}: nested more than {MAX_DEPTH} levels deep")
        self.line = line


def too_deep(text: str) -> int | None:
    """The line where nesting passes MAX_DEPTH (flow brackets, or compact ``- - -`` on one line), or None.

    Brackets inside quotes and comments count too: a real file never comes near the limit."""
    depth = 0
    for mark in _BRACKETS.finditer(text):
        if mark.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, mark.start()) + 1
        elif depth:
            depth -= 1
    compact = _COMPACT.search(text)
    if compact is not None:
        return text.count("\n", 0, compact.start()) + 1
    return None


def check_depth(text: str) -> None:
    """Raise TooDeep when :func:`too_deep` finds a line."""
    line = too_deep(text)
    if line is not None:
        raise TooDeep(line)

"""A handful of strings a regex matches, to test whether an earlier rule shadows a later one.

Built from the parsed pattern (the stdlib's own regex parser): one string per alternative,
repeats at their minimum and one more, a character from each class. A later rule is
reported unreachable only when every sample of it also matches an earlier rule, so a false
alarm needs an earlier regex that happens to match every sample while missing some other
path: rare for path regexes, and the message says which rule to look at.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# the stdlib's regex parser (re._parser since 3.11); typed loosely, it has no stubs
_sre_parse: Any = importlib.import_module("re._parser")
_sre_constants: Any = importlib.import_module("re._constants")

_MAX_SAMPLES = 40
_PROBE_CHARS = "a0_-x.Z/ "


def sample_matches(regex: str) -> list[str]:
    """Strings that ``re.search(regex, s)`` matches; empty if the regex is not understood."""
    try:
        parsed = _sre_parse.parse(regex)
        samples = _expand(list(parsed))
    except (re.error, RecursionError, ValueError, TypeError):
        return []
    pattern = re.compile(regex)
    unique = dict.fromkeys(s for s in samples[:_MAX_SAMPLES] if pattern.search(s))
    return list(unique)


def _expand(items: list[Any]) -> list[str]:
    results = [""]
    for op, arg in items:
        options = _options(op, arg)
        if not options:
            return []
        results = [prefix + option for prefix in results for option in options][:_MAX_SAMPLES]
    return results


def _options(op: Any, arg: Any) -> list[str]:
    c = _sre_constants
    if op == c.LITERAL:
        return [chr(arg)]
    if op == c.NOT_LITERAL:
        return [next(ch for ch in _PROBE_CHARS if ord(ch) != arg)]
    if op == c.ANY:
        return ["a"]
    if op == c.AT:
        return [""]
    if op == c.IN:
        return _class_member(arg)
    if op == c.CATEGORY:
        return _category(arg)
    if op == c.BRANCH:
        out: list[str] = []
        for branch in arg[1]:
            out += _expand(list(branch))
        return out
    if op == c.SUBPATTERN:
        return _expand(list(arg[-1]))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", object())):
        low, high, body = arg
        body_samples = _expand(list(body)) or [""]
        counts = [low] + ([low + 1] if high is c.MAXREPEAT or high > low else [])
        return [body_samples[0] * count for count in counts] + (
            [s * max(low, 1) for s in body_samples[1:3]] if low >= 1 or high else []
        )
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [""]
    raise ValueError(f"unsupported regex construct {op}")


def _class_member(items: list[Any]) -> list[str]:
    c = _sre_constants
    negate = any(op == c.NEGATE for op, _ in items)
    members: list[str] = []
    for op, arg in items:
        if op == c.LITERAL:
            members.append(chr(arg))
        elif op == c.RANGE:
            members.append(chr(arg[0]))
        elif op == c.CATEGORY:
            members += _category(arg)
    if negate:
        return [next((ch for ch in _PROBE_CHARS if ch not in members), "~")]
    return members[:3] or ["a"]


def _category(arg: Any) -> list[str]:
    name = str(arg)
    if "NOT_DIGIT" in name:
        return ["a"]
    if "DIGIT" in name:
        return ["0"]
    if "NOT_SPACE" in name:
        return ["a"]
    if "SPACE" in name:
        return [" "]
    if "NOT_WORD" in name:
        return ["/"]
    return ["a"]

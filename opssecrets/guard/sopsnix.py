"""sops-nix references: a ``sops.secrets."NAME"`` whose sops file has no key ``NAME``.

sops-nix fails the deploy (``validateSopsFiles``) when a declared secret is missing from
its file, so the commit should fail first. This reads Nix just far enough: comments and
string contents are masked so braces and semicolons can be matched, then the declarations
``sops.secrets.NAME = {...}``, ``sops.secrets = { NAME = ...; }``, ``sops = { secrets = ...;
defaultSopsFile = ...; }`` and ``sops.secrets.NAME.sopsFile = ...`` are read. A ``sopsFile``
that is not a plain path (``./x.yaml``, ``../x.yaml``, ``"${self}/x.yaml"``, ``self +
"/x.yaml"``) cannot be resolved without evaluating Nix, and is not checked.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opssecrets.guard.findings import Finding
from opssecrets.guard.sources import Reader
from opssecrets.secretfile import file_format, parse_tree

RULE_MISSING_KEY = "sops-nix-missing-key"
RULE_MISSING_FILE = "sops-nix-missing-file"


_SPECIAL = re.compile(r"#|/\*|\"|''")
_DOUBLE_QUOTED_END = re.compile(r'(?:[^"\\]|\\.)*("|$)', re.S)
_INDENTED_END = re.compile(r"(?:[^']|'(?!')|'''|''\$|''\\.)*('')|.*$", re.S)


def mask(text: str) -> str:
    """``text`` with comments blanked and string contents replaced by ``x`` (same offsets).

    Jumps from one comment or string start to the next with a regex, so a long .nix file
    costs a few C-level searches, not a Python loop per character.
    """
    pieces: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        special = _SPECIAL.search(text, i)
        if special is None:
            break
        start = special.start()
        opener = special.group(0)
        if opener == "#":
            end = text.find("\n", start)
            end = n if end < 0 else end
            pieces += [text[i:start], " " * (end - start)]
        elif opener == "/*":
            end = text.find("*/", start + 2)
            end = n if end < 0 else end + 2
            pieces += [text[i:start], _blank(text[start:end], " ")]
        elif opener == '"':
            body = _DOUBLE_QUOTED_END.match(text, start + 1)
            assert body is not None  # the pattern matches the empty string
            close = body.start(1)
            end = min(n, close + 1)
            pieces += [text[i : start + 1], _blank(text[start + 1 : close], "x"), text[close:end]]
        else:  # ''indented string''
            body = _INDENTED_END.match(text, start + 2)
            assert body is not None
            close = body.start(1) if body.group(1) is not None else n
            end = min(n, close + 2)
            pieces += [text[i : start + 2], _blank(text[start + 2 : close], "x"), text[close:end]]
        i = end
    pieces.append(text[i:])
    return "".join(pieces)


def _blank(segment: str, fill: str) -> str:
    """Every character but newlines replaced by ``fill``."""
    return "\n".join(fill * len(part) for part in segment.split("\n"))


def _matching_brace(masked: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(masked)):
        ch = masked[j]
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth == 0:
                return j
    return len(masked)


def _statement_end(masked: str, start: int, stop: int) -> int:
    """The ``;`` ending the binding that starts at ``start`` (at depth 0), or ``stop``."""
    depth = 0
    for j in range(start, stop):
        ch = masked[j]
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            if depth == 0:
                return j
            depth -= 1
        elif ch == ";" and depth == 0:
            return j
    return stop


_ATTR = r'(?:"[^"\n]*"|[A-Za-z_][A-Za-z0-9_\'-]*)'
_BINDING = re.compile(rf"\s*({_ATTR}(?:\s*\.\s*{_ATTR})*)\s*=(?!=)\s*")


def _bindings(text: str, masked: str, start: int, stop: int) -> Iterator[tuple[list[str], int, int, int]]:
    """Top-level bindings of an attrset body: (attribute path, name offset, value start, value end)."""
    i = start
    while i < stop:
        match = _BINDING.match(masked, i)
        if match is None or match.end() > stop:
            nxt = _statement_end(masked, i, stop)
            i = nxt + 1
            continue
        path = [_attr_name(text, part_start, part) for part_start, part in _split_attrpath(match.group(1), match.start(1))]
        value_start = match.end()
        value_end = _statement_end(masked, value_start, stop)
        yield path, match.start(1), value_start, value_end
        i = value_end + 1


def _split_attrpath(attrpath: str, offset: int) -> Iterator[tuple[int, str]]:
    for part in re.finditer(_ATTR, attrpath):
        yield offset + part.start(), part.group(0)


def _attr_name(text: str, at: int, masked_part: str) -> str:
    if masked_part.startswith('"'):
        return text[at + 1 : at + len(masked_part) - 1]
    return masked_part


@dataclass
class _Secret:
    name: str
    offset: int
    options: dict[str, tuple[str, int]] = field(default_factory=dict)  # option -> (raw value, offset)


@dataclass
class NixSopsDecls:
    """What one .nix file declares: secrets (with their options) and a default sops file."""

    secrets: list[_Secret] = field(default_factory=list)
    default_file: tuple[str, int] | None = None


_OPTIONS = ("sopsFile", "key", "format", "restartUnits", "reloadUnits")


def _secret_from_value(text: str, masked: str, secret: _Secret, value_start: int, value_end: int) -> None:
    if masked.startswith("{", value_start):
        close = _matching_brace(masked, value_start)
        for path, _, vstart, vend in _bindings(text, masked, value_start + 1, close):
            if len(path) == 1 and path[0] in _OPTIONS:
                secret.options[path[0]] = (text[vstart:vend].strip(), vstart)


def _declare(
    text: str,
    masked: str,
    declared: dict[str, _Secret],
    decls: NixSopsDecls,
    name: str,
    offset: int,
    rest: list[str],
    vstart: int,
    vend: int,
) -> None:
    """Record ``sops.secrets.NAME[.option] = value``: the secret once, then its options."""
    secret = declared.get(name)
    if secret is None:
        secret = declared[name] = _Secret(name, offset)
        decls.secrets.append(secret)
    if not rest:
        _secret_from_value(text, masked, secret, vstart, vend)
    elif len(rest) == 1 and rest[0] in _OPTIONS:
        secret.options[rest[0]] = (text[vstart:vend].strip(), vstart)


def _secrets_attrset(text: str, masked: str, start: int, stop: int, decls: NixSopsDecls, declared: dict[str, _Secret]) -> None:
    for path, offset, vstart, vend in _bindings(text, masked, start, stop):
        _declare(text, masked, declared, decls, path[0], offset, path[1:], vstart, vend)


_SOPS_PREFIX = re.compile(r"(?<![A-Za-z0-9_.'\"-])sops\s*(?=[.=])")


def parse_declarations(text: str) -> NixSopsDecls:
    masked = mask(text)
    decls = NixSopsDecls()
    if "sops" not in masked:
        return decls
    direct: dict[str, _Secret] = {}
    for prefix in _SOPS_PREFIX.finditer(masked):
        # re-read `sops...` as a binding: `sops.secrets.X = ...`, `sops = {...}`, `sops.defaultSopsFile = ...`
        match = _BINDING.match(masked, prefix.start())
        if match is None:
            continue
        parts = list(_split_attrpath(match.group(1), match.start(1)))
        names = [_attr_name(text, at, part) for at, part in parts]
        if names[0] != "sops":
            continue
        vstart = match.end()
        vend = _statement_end(masked, vstart, len(masked))
        if names == ["sops"] and masked.startswith("{", vstart):
            close = _matching_brace(masked, vstart)
            for path, offset, s, e in _bindings(text, masked, vstart + 1, close):
                _sops_binding(text, masked, ["sops", *path], [offset] * (len(path) + 1), s, e, decls, direct)
            continue
        _sops_binding(text, masked, names, [at for at, _ in parts], vstart, vend, decls, direct)
    return decls


def _sops_binding(
    text: str,
    masked: str,
    names: list[str],
    offsets: list[int],
    vstart: int,
    vend: int,
    decls: NixSopsDecls,
    direct: dict[str, _Secret],
) -> None:
    if names == ["sops", "defaultSopsFile"]:
        decls.default_file = (text[vstart:vend].strip(), vstart)
    elif names == ["sops", "secrets"] and masked.startswith("{", vstart):
        _secrets_attrset(text, masked, vstart + 1, _matching_brace(masked, vstart), decls, direct)
    elif len(names) >= 3 and names[1] == "secrets":
        offset = offsets[2] if len(offsets) > 2 else offsets[-1]
        _declare(text, masked, direct, decls, names[2], offset, names[3:], vstart, vend)


# -- resolving files and keys --------------------------------------------------------------

_SELF_PATH = re.compile(r'^\(?\s*(?:"\$\{(?:inputs\.)?self\}(/[^"$]*)"|(?:inputs\.)?self\s*\+\s*"(/[^"$]*)")\s*\)?$')
_RELATIVE_PATH = re.compile(r"^\(?\s*(\.{1,2}/[A-Za-z0-9._/+-]+)\s*\)?$")


def resolve_path(expr: str, nix_rel: str) -> str | None:
    """A sopsFile expression as a repository-relative path, or None when it needs evaluation."""
    match = _RELATIVE_PATH.match(expr)
    if match:
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(nix_rel), match.group(1)))
    else:
        match = _SELF_PATH.match(expr)
        if not match:
            return None
        joined = posixpath.normpath((match.group(1) or match.group(2)).lstrip("/"))
    if joined.startswith("../") or joined == "..":
        return None
    return joined


_PLACEHOLDER = re.compile(r'sops\s*\.\s*placeholder\s*\.\s*(?:"([^"\\$\n]+)"|([A-Za-z_][A-Za-z0-9_\'-]*))')


def placeholders(text: str) -> list[tuple[str, int]]:
    """``config.sops.placeholder."NAME"`` references (often inside a template's string): (NAME, offset).

    Read from the raw text, since they sit in ``${...}`` inside strings; a commented-out one
    (blank in the masked text) does not count."""
    if "placeholder" not in text:
        return []
    masked = mask(text)
    return [
        (match.group(1) or match.group(2), match.start())
        for match in _PLACEHOLDER.finditer(text)
        if not masked[match.start()].isspace()
    ]


def _string_value(expr: str) -> str | None:
    match = re.fullmatch(r'"([^"\\$]*)"', expr.strip())
    return match.group(1) if match else None


def _has_key(tree: Any, key: str) -> bool:
    node = tree
    for part in [p for p in key.split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check_nix_file(rel: str, data: bytes, read: Reader, repo_default: str | None = None) -> list[Finding]:
    """Findings for one .nix file: declared secrets missing from their sops file."""
    if b"sops" not in data:
        return []
    text = data.decode("utf-8", "replace")
    decls = parse_declarations(text)
    if not decls.secrets:
        return []
    default: str | None = repo_default
    if decls.default_file is not None:
        default = resolve_path(decls.default_file[0], rel)
    findings: list[Finding] = []
    trees: dict[str, Any] = {}
    for secret in decls.secrets:
        if "${" in secret.name:
            continue
        sops_file = resolve_path(secret.options["sopsFile"][0], rel) if "sopsFile" in secret.options else default
        if sops_file is None:
            continue
        fmt_expr = secret.options.get("format", ('"yaml"', 0))[0]
        key_expr = secret.options.get("key")
        key = secret.name if key_expr is None else _string_value(key_expr[0])
        line = _line(text, secret.offset)
        if sops_file not in trees:
            trees[sops_file] = _load_tree(sops_file, read)
        tree = trees[sops_file]
        if tree is None:
            findings.append(
                Finding(
                    rel,
                    line,
                    RULE_MISSING_FILE,
                    f'sops.secrets."{secret.name}" uses {sops_file}, which does not exist (or is not staged); '
                    "create it with sops or fix sopsFile",
                )
            )
            continue
        if key is None or key == "" or _string_value(fmt_expr) not in ("yaml", "json") or tree is False:
            continue
        if not _has_key(tree, key):
            findings.append(
                Finding(
                    rel,
                    line,
                    RULE_MISSING_KEY,
                    f'sops.secrets."{secret.name}": {sops_file} has no key {key}; the deploy would fail: '
                    f"add it with 'sops set {sops_file} {_index(key)} ...' or fix the name",
                )
            )
    return findings


def _index(key: str) -> str:
    return "".join(f'["{part}"]' for part in key.split("/") if part)


def _load_tree(sops_file: str, read: Reader) -> Any:
    """The file's tree (values still encrypted), None if it is missing, False if unreadable."""
    data = read(sops_file)
    if data is None:
        return None
    if file_format(sops_file) not in ("yaml", "json"):
        return False
    try:
        tree, _ = parse_tree(Path(sops_file), data.decode("utf-8"))
    except Exception:  # not parseable: other checks report it; no key check possible
        return False
    return tree


def default_from_files(candidates: dict[str, bytes]) -> str | None:
    """The one ``sops.defaultSopsFile`` the repository's .nix files agree on, if any."""
    found: set[str] = set()
    for rel, data in candidates.items():
        decls = parse_declarations(data.decode("utf-8", "replace"))
        if decls.default_file is not None:
            resolved = resolve_path(decls.default_file[0], rel)
            if resolved is None:
                return None
            found.add(resolved)
    return found.pop() if len(found) == 1 else None

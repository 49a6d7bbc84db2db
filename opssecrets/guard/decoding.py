"""Decoded views of a file for the leak scan: the values a program reading it would see.

A token hides from a scan of raw lines in the shapes configuration formats allow: a JSON,
TOML, HCL or Nix string with escapes (``\\n``, ``\\u0041``), a YAML scalar continued over
lines or in a literal/folded block, a Kubernetes ``Secret``'s base64 ``data``, a UTF-16
file. This module turns those into ``name: "value"`` segments, each with the lines of its
value, for the scanner to run its rules on. Decoding is kept cheap: only files of the
right type, at most 1 MiB, and only when a quick check shows something to decode.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

SNIFF = 8192  # the binary sniff's window (a NUL in it: binary, unless UTF-16)
MAX_DECODE_BYTES = 1 << 20
MAX_VALUE_CHARS = 1 << 16
ESCAPED_SUFFIXES = (".json", ".toml", ".tf", ".tfvars", ".hcl", ".nix")
YAML_SUFFIXES = (".yaml", ".yml")

# A quoted string, after a (quoted or bare) key and `:` or `=` when it has one (not in a list).
_ESCAPED = re.compile(rb"""(?:(?:"([^"\\\r\n]{1,128})"|([A-Za-z0-9_.\-]{1,128}))[ \t]*[:=][ \t]*)?"((?:[^"\\\r\n]|\\.){1,65536})\"""")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "e": "\x1b", "N": "\x85", "_": "\xa0"}


# A TOML key opening a multi-line string (basic or literal).
_TOML_MULTILINE = re.compile(rb"""^[ \t]*("?)([A-Za-z0-9_.\-]{1,128})\1[ \t]*=[ \t]*("{3}|'{3})""", re.MULTILINE)


@dataclass(frozen=True)
class Segment:
    """Decoded text to scan; findings in it are reported on ``line`` (its key's line).

    ``first``..``last`` are the raw lines the value spans: a finding the raw scan already
    made there is not repeated.
    """

    line: int
    first: int
    last: int
    text: bytes


def is_utf16(data: bytes) -> bool:
    """A byte-order mark, or (in the sniffed window) NULs at every other byte and none between."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = data[:SNIFF]
    if len(head) < 4:
        return False
    even, odd = head[0::2], head[1::2]
    return any(other.count(0) == 0 and zeros.count(0) >= 0.9 * len(zeros) for zeros, other in ((odd, even), (even, odd)))


def utf16_text(data: bytes) -> bytes | None:
    """UTF-16 text re-encoded as UTF-8 (line numbers stay the same); None for anything else."""
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\0" not in data[:SNIFF]:
        return None
    if not is_utf16(data):
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-16-le" if data[1:SNIFF:2].count(0) >= data[0:SNIFF:2].count(0) else "utf-16-be"
    return data.decode(encoding, "replace").encode("utf-8")


def decoded_values(rel: str, data: bytes, exact_names: tuple[str, ...] = ()) -> list[Segment]:
    """The segments of ``data`` worth a second scan after decoding (empty for most files)."""
    if len(data) > MAX_DECODE_BYTES:
        return []
    lowered_name = rel.lower()
    if lowered_name.endswith(YAML_SUFFIXES):
        return _yaml_values(data, exact_names)
    if lowered_name.endswith(ESCAPED_SUFFIXES):
        segments = _escaped_strings(data)
        if lowered_name.endswith(".toml") and (b'"""' in data or b"'''" in data):
            segments.extend(_toml_multiline(data))
        return segments
    return []


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) > 1:
            return chr(int(code[1:], 16)) if int(code[1:], 16) < 0x110000 else "?"
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(one, body)


def _pair(key: str, value: str) -> bytes:
    """``key: "value"`` as the scanner's rules read it (a multi-line value on the lines below its key)."""
    value = value.strip()[:MAX_VALUE_CHARS]
    if "\n" in value:
        text = f"{key}:\n{value}"
    else:
        quote = next((q for q in ('"', "'", "`") if q not in value), None)
        text = f"{key}: {quote}{value}{quote}" if quote is not None and "\\" not in value else f"{key}: {value}"
    return text.encode("utf-8", "replace")


def _escaped_strings(data: bytes) -> list[Segment]:
    """Strings with escapes in JSON, TOML, HCL and Nix: one segment per escaped value."""
    if b"\\" not in data:
        return []
    out: list[Segment] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if b"\\" not in line:
            continue
        for match in _ESCAPED.finditer(line):
            body = match.group(3)
            if b"\\" not in body:
                continue
            key = (match.group(1) or match.group(2) or b"item").decode("utf-8", "replace")
            value = _unescape(body.decode("utf-8", "replace"))
            out.append(Segment(number, number, number, _pair(key, value)))
    return out


def _toml_multiline(data: bytes) -> list[Segment]:
    """TOML multi-line strings (a line-ending backslash joins lines): each value as TOML reads it.

    A value is reported on the line of its key (the last key of that name when one repeats).
    """
    import tomllib

    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return []  # not TOML, or nested past the parser's recursion (hostile input)
    values: dict[str, list[str]] = {}
    stack: list[Any] = [table]
    while stack:
        node = stack.pop()
        pairs = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        for key, value in pairs:
            if isinstance(value, str) and value and "\n" not in value.strip():
                values.setdefault(str(key), []).append(value)
            elif isinstance(value, (dict, list)):
                stack.append(value)
    out: list[Segment] = []
    for match in _TOML_MULTILINE.finditer(data):
        key = match.group(2).decode("utf-8", "replace").rsplit(".", 1)[-1]
        line = data.count(b"\n", 0, match.start()) + 1
        close = data.find(match.group(3), match.end())
        last = line + data.count(b"\n", match.end(), close if close > 0 else match.end())
        out.extend(Segment(line, line, last, _pair(key, value)) for value in values.get(key, ()))
    return out


_BLOCK_SCALAR = re.compile(rb"[:\-][ \t]+[|>][-+0-9]{0,2}[ \t]*(?:#[^\n]*)?\r?\n")
_KUBERNETES_SECRET = re.compile(rb"^kind:[ \t]*[\"']?Secret\b", re.MULTILINE)


def _worth_decoding(data: bytes, exact_names: tuple[str, ...]) -> bool:
    """Something to decode: an escape, a block scalar, a Kubernetes Secret, or a platform key.

    Plain substring tests first: one regex with all of these (case-insensitive names) costs
    more than the scan itself on a large file.
    """
    if b"\\" in data:
        return True
    if (b"|" in data or b">" in data) and _BLOCK_SCALAR.search(data) is not None:
        return True
    if b"Secret" in data and _KUBERNETES_SECRET.search(data) is not None:
        return True
    lowered = data.lower()
    return any(name.encode("utf-8") in lowered for name in exact_names)


def _yaml_values(data: bytes, exact_names: tuple[str, ...]) -> list[Segment]:
    if b"ENC[AES256_GCM," in data or not _worth_decoding(data, exact_names):
        return []  # a sops file's values are ciphertext; most YAML has nothing to decode
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    import yaml

    from opssecrets.yamllimits import compose_all

    try:
        docs = [doc for doc in compose_all(text) if doc is not None]
    except (yaml.YAMLError, RecursionError, ValueError):  # TooDeep is a ValueError
        return []
    out: list[Segment] = []
    for doc in docs:
        out.extend(_kubernetes_secret(doc))
    out.extend(_yaml_scalars(text, docs, exact_names))
    return out


def _scalar_pairs(node: Any) -> list[tuple[str, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return []
    return [(key.value, value) for key, value in node.value if isinstance(key, yaml.ScalarNode) and isinstance(key.value, str)]


def _kubernetes_secret(doc: Any) -> list[Segment]:
    """A ``kind: Secret``'s ``data`` values, base64-decoded (text only)."""
    import yaml

    pairs = dict(_scalar_pairs(doc))
    kind = pairs.get("kind")
    if not isinstance(kind, yaml.ScalarNode) or kind.value != "Secret":
        return []
    out: list[Segment] = []
    for key, value in _scalar_pairs(pairs.get("data")):
        if not isinstance(value, yaml.ScalarNode) or not isinstance(value.value, str) or len(value.value) > 4 * MAX_VALUE_CHARS:
            continue
        try:
            decoded = base64.b64decode("".join(value.value.split()), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue  # not base64, or not text (a binary key file: its own rules see the raw file)
        first, last = value.start_mark.line + 1, value.end_mark.line + 1
        out.append(Segment(first, first, last, _pair(key, decoded)))
    return out


def _decoding_changes(text: str, node: Any) -> bool:
    """A block scalar, a scalar over several lines, or a double-quoted one with escapes."""
    start, end = node.start_mark, node.end_mark
    return node.style in ("|", ">") or start.line != end.line or (node.style == '"' and "\\" in text[start.index : end.index])


def _yaml_scalars(text: str, docs: list[Any], exact_names: tuple[str, ...]) -> list[Segment]:
    """Values whose raw lines differ from what they decode to, and every platform key's value."""
    import yaml

    out: list[Segment] = []
    stack = list(docs)
    visited: set[int] = set()  # aliases share nodes: each is walked once
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if isinstance(item, yaml.ScalarNode):
                    if isinstance(item.value, str) and _decoding_changes(text, item):
                        line = item.start_mark.line + 1
                        out.append(Segment(line, line, item.end_mark.line + 1, _pair("item", item.value)))
                else:
                    stack.append(item)
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        for key, value in node.value:
            if not isinstance(value, yaml.ScalarNode):
                stack.append(value)
                continue
            if not isinstance(key, yaml.ScalarNode) or not isinstance(value.value, str) or not value.value:
                continue
            start, end = value.start_mark, value.end_mark
            platform = key.value.rsplit(".", 1)[-1].lower() in exact_names
            if platform or _decoding_changes(text, value):
                out.append(Segment(key.start_mark.line + 1, start.line + 1, end.line + 1, _pair(key.value, value.value)))
    return out

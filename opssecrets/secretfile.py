"""What an encrypted sops file says without decrypting it.

sops writes YAML, JSON, dotenv and INI files (and binary files as JSON with a ``data``
key). Key names and the ``sops`` metadata are plaintext: the recipients each data key is
wrapped for, ``lastmodified``, the ``mac`` and the per-file encryption policy. Reading them
needs no identity, so ``access``, ``reencrypt --check``, ``status`` and the guard stay fast.
"""

from __future__ import annotations

import configparser
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opssecrets.rules import POLICY_KEYS, CreationRule
from opssecrets.yamllimits import safe_load

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv", ".ini": "ini"}
# Where the content does not parse as the name says, other formats are tried in this order: JSON before YAML (JSON is
# YAML too) and both before the line formats, which would read almost any text. A format is
# tried only where its metadata marker appears (a linear scan), so a hostile file costs one
# parse, not four.
_SNIFF_ORDER = ("json", "yaml", "dotenv", "ini")
_MARKERS = {
    "json": re.compile(r'"sops"\s*:'),
    "yaml": re.compile(r"^sops:", re.M),
    "dotenv": re.compile(r"^sops_", re.M),
    "ini": re.compile(r"^\[sops\]", re.M),
}


def file_format(path: Path | str) -> str:
    """sops' store for a path, from its name as sops picks it (``binary`` otherwise).

    sops tests the end of the name (``strings.HasSuffix``), not Python's ``suffix``: a file
    named exactly ``.env`` is dotenv to sops, while ``Path(".env").suffix`` is empty."""
    name = Path(path).name.lower()
    for ending, fmt in FORMATS.items():
        if name.endswith(ending):
            return fmt
    return "binary"


def other_format(path: Path | str, text: str) -> str | None:
    """A store other than the name's guess in which ``text`` holds sops metadata, or None."""
    guess = file_format(path)
    for fmt in _SNIFF_ORDER:
        if fmt != guess and _MARKERS[fmt].search(text) and _parsed_as(path, text, fmt) is not None:
            return fmt
    return None


def _parsed_as(path: Path | str, text: str, fmt: str) -> tuple[dict[str, Any], SopsMetadata] | None:
    try:
        tree, meta = parse_tree(path, text, fmt)
        return tree, metadata_from(meta)
    except Exception:  # any parser's error: not this format
        return None


def sops_type_args(path: Path | str, fmt: str) -> tuple[str, ...]:
    """The ``--input-type``/``--output-type`` flags sops needs for a file whose content is
    ``fmt`` although its name says otherwise (empty when the name says it)."""
    if fmt == file_format(path):
        return ()
    return ("--input-type", fmt, "--output-type", fmt)


class NotASopsFile(Exception):
    """The file has no parseable sops metadata (plaintext, or damaged)."""


@dataclass(frozen=True)
class SopsGroup:
    age: tuple[str, ...]
    other: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SopsMetadata:
    groups: tuple[SopsGroup, ...]
    lastmodified: str | None
    mac: str | None
    version: str | None
    shamir_threshold: int | None
    policy: Mapping[str, Any]

    @property
    def age_recipients(self) -> frozenset[str]:
        return frozenset(key for group in self.groups for key in group.age)


@dataclass(frozen=True)
class SecretFile:
    """A parsed sops file: its tree (values still ``ENC[...]``) and its metadata."""

    path: Path
    format: str
    tree: Mapping[str, Any]
    metadata: SopsMetadata

    @property
    def sops_type_args(self) -> tuple[str, ...]:
        """Flags sops needs to read this file when its name does not say its format."""
        return sops_type_args(self.path, self.format)

    def key_paths(self) -> list[str]:
        """Every leaf key, nested with ``/`` as sops-nix names them (``slack/bot_token``)."""
        if self.format == "binary":
            return ["data"]
        return [path for path, _ in iter_leaves(self.tree)]


def iter_leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if prefix == "" and key == "sops":
                continue
            yield from iter_leaves(value, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from iter_leaves(value, f"{prefix}[{index}]")
    else:
        yield prefix, tree


_FLAT_PART = re.compile(r"__(list|map)_")
MAX_FLAT_INDEX = 10_000  # sops numbers the entries it writes: a few recipients, a few groups


def _unflatten(flat: Mapping[str, str]) -> dict[str, Any]:
    """Rebuild sops' metadata from dotenv/INI keys like ``age__list_0__map_recipient``."""
    root: dict[str, Any] = {}
    for flat_key, value in flat.items():
        parts = _FLAT_PART.split(flat_key)
        # parts: [name, kind, rest, kind, rest, ...]; a rest starts with an index for lists
        node: Any = root
        name = parts[0]
        steps: list[tuple[str, str]] = [("map", name)]
        for i in range(1, len(parts), 2):
            kind, rest = parts[i], parts[i + 1]
            if kind == "list":
                steps.append(("list", rest))
            else:
                steps.append(("map", rest))
        for (kind, label), (next_kind, _) in zip(steps, [*steps[1:], ("leaf", "")], strict=True):
            key: Any = int(label) if kind == "list" and label.isdigit() else label
            if isinstance(key, int) and key > MAX_FLAT_INDEX:
                # age__list_99999999999 would make a list of that many entries (found by fuzzing)
                raise ValueError(f"list index {key} in sops metadata is out of range")
            container_default: Any = [] if next_kind == "list" else {}
            if next_kind == "leaf":
                _set(node, key, value)
            else:
                node = _child(node, key, container_default)
    return root


def _set(node: Any, key: Any, value: Any) -> None:
    if isinstance(node, list):
        while len(node) <= key:
            node.append(None)
        node[key] = value
    else:
        node[key] = value


def _child(node: Any, key: Any, default: Any) -> Any:
    if isinstance(node, list):
        while len(node) <= key:
            node.append(None)
        if node[key] is None:
            node[key] = default
        return node[key]
    return node.setdefault(key, default)


INI_DEFAULT = "DEFAULT"  # configparser's (and go-ini's) section whose keys every section inherits
_INI_SECTION = re.compile(r"\[(?P<header>.+)\]")
_INI_OPTION = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")


@dataclass(frozen=True)
class FlatEntry:
    """One ``key=value`` of a dotenv or INI file: its INI section (None in dotenv) and line."""

    section: str | None
    key: str
    value: str
    line: int


def flat_entries(text: str, fmt: str) -> list[FlatEntry]:
    """The entries of a dotenv or INI file, in file order (a key may appear twice: the last counts).

    dotenv as sops reads it: ``KEY=VALUE`` split at the first ``=``, nothing stripped, ``#``
    lines and lines without ``=`` skipped. INI as Python's configparser reads it (with
    ``interpolation=None, strict=False`` and case kept): ``=`` or ``:``, values stripped,
    indented lines continue a value, ``#``/``;`` comment lines; a key outside any section,
    an empty key or a line that is none of these raises configparser.Error, as configparser does.
    Both the secret-file reader and the guard read these formats here, so they agree."""
    if fmt == "dotenv":
        return [
            FlatEntry(None, key, value, number)
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#") and "=" in line
            for key, _, value in [line.partition("=")]
        ]
    return _ini_read(text)[0]


def _ini_read(text: str) -> tuple[list[FlatEntry], list[str]]:
    """The entries, and every section header's name (a section may hold no entry)."""
    names: list[str] = []
    entries: list[FlatEntry] = []
    parts: list[list[str]] = []  # each entry's value lines, joined at the end
    section: str | None = None
    current: int | None = None  # the entry a more indented line continues
    indent = 0
    for number, line in enumerate(io.StringIO(text), start=1):  # "\n" only, as configparser splits
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            continue
        if not stripped:
            if current is not None:
                parts[current].append("")  # an empty line inside a value, dropped at its end
            continue
        here = len(line) - len(line.lstrip())
        if current is not None and here > indent:
            parts[current].append(stripped)
            continue
        indent = here
        header = _INI_SECTION.match(stripped)
        if header is not None:
            section, current = header.group("header"), None
            names.append(section)
            continue
        if section is None:
            raise configparser.MissingSectionHeaderError("<string>", number, line)
        option = _INI_OPTION.match(stripped)
        if option is None or not option.group("key"):
            raise configparser.ParsingError(f"line {number}: neither a [section] nor a key = value")
        current = len(entries)
        entries.append(FlatEntry(section, option.group("key").rstrip(), "", number))
        parts.append([option.group("value").strip()])
    return [FlatEntry(e.section, e.key, "\n".join(lines).rstrip(), e.line) for e, lines in zip(entries, parts, strict=True)], names


def parse_tree(path: Path | str, text: str, fmt: str | None = None) -> tuple[dict[str, Any], Any]:
    """Return ``(tree without sops, raw sops metadata)`` for any sops format (``fmt``, else
    the one the name says)."""
    fmt = fmt or file_format(path)
    if fmt == "dotenv":
        tree: dict[str, Any] = {}
        flat: dict[str, str] = {}
        for entry in flat_entries(text, fmt):
            if entry.key.startswith("sops_"):
                flat[entry.key[len("sops_") :]] = entry.value
            else:
                tree[entry.key] = entry.value
        return tree, (_unflatten(flat) if flat else None)
    if fmt == "ini":
        entries, names = _ini_read(text)
        sections: dict[str, dict[str, str]] = {name: {} for name in names}
        for entry in entries:
            sections[entry.section or INI_DEFAULT][entry.key] = entry.value
        defaults = sections.pop(INI_DEFAULT, {})
        for values in sections.values():  # every section sees DEFAULT's keys, as in configparser
            for key, value in defaults.items():
                values.setdefault(key, value)
        meta_values = sections.pop("sops", None)
        return dict(sections), (_unflatten(meta_values) if meta_values is not None else None)
    # sops' binary store writes JSON ({"data": "ENC[...]", "sops": {...}})
    data = json.loads(text) if fmt in ("json", "binary") else safe_load(text)  # TooDeep (a ValueError) before libyaml could crash
    if not isinstance(data, dict):
        return {}, None
    meta = data.get("sops")
    return {k: v for k, v in data.items() if k != "sops"}, meta


def _groups_from(meta: Mapping[str, Any]) -> tuple[SopsGroup, ...]:
    raw_groups = meta.get("key_groups")
    sources: list[Mapping[str, Any]] = (
        [g for g in raw_groups if isinstance(g, Mapping)] if isinstance(raw_groups, list) and raw_groups else [meta]
    )
    groups: list[SopsGroup] = []
    for source in sources:
        age = tuple(str(entry["recipient"]) for entry in (source.get("age") or []) if isinstance(entry, Mapping) and entry.get("recipient"))
        other: list[tuple[str, str]] = []
        for key_type, field in (("pgp", "fp"), ("kms", "arn"), ("gcp_kms", "resource_id"), ("azure_kv", "key"), ("hc_vault", "key")):
            for entry in source.get(key_type) or []:
                if isinstance(entry, Mapping) and entry.get(field):
                    other.append((key_type, str(entry[field])))
        groups.append(SopsGroup(age=age, other=tuple(other)))
    return tuple(groups)


def metadata_from(meta: Any) -> SopsMetadata:
    if not isinstance(meta, Mapping) or ("version" not in meta and "mac" not in meta):
        raise NotASopsFile("no sops metadata")
    threshold = meta.get("shamir_threshold")
    return SopsMetadata(
        groups=_groups_from(meta),
        lastmodified=str(meta["lastmodified"]) if meta.get("lastmodified") else None,
        mac=str(meta["mac"]) if meta.get("mac") else None,
        version=str(meta["version"]) if meta.get("version") else None,
        shamir_threshold=int(str(threshold)) if str(threshold).isdigit() else None,
        policy={key: meta[key] for key in POLICY_KEYS if key in meta},
    )


def read_secret_file(path: Path, text: str | None = None) -> SecretFile:
    """Parse ``path`` as a sops file; raise NotASopsFile when it is not one."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NotASopsFile(str(exc)) from exc
    fmt = file_format(path)
    try:
        tree, meta = parse_tree(path, text, fmt)
        return SecretFile(path=path, format=fmt, tree=tree, metadata=metadata_from(meta))
    except Exception as exc:  # any parser's error means: not a file sops wrote, under that name's format
        other = other_format(path, text)  # by content: encrypted with --input-type, or renamed
        if other is None:
            if isinstance(exc, NotASopsFile):
                raise
            raise NotASopsFile(f"cannot parse as {fmt}: {exc.__class__.__name__}") from exc
    found = _parsed_as(path, text, other)
    assert found is not None
    return SecretFile(path=path, format=other, tree=found[0], metadata=found[1])


def file_age_recipients(path: Path) -> list[str] | None:
    """The age recipients a sops file's metadata lists now, sorted; None if it is not a sops file."""
    try:
        return sorted(read_secret_file(path).metadata.age_recipients)
    except NotASopsFile:
        return None


def rule_groups(rule: CreationRule) -> tuple[frozenset[str], ...]:
    """A rule's age recipients, key group by key group (no ``key_groups``: one group)."""
    return tuple(frozenset(group.age) for group in rule.groups)


def file_groups(metadata: SopsMetadata) -> tuple[frozenset[str], ...]:
    """A sops file's age recipients, key group by key group, as its metadata lists them."""
    return tuple(frozenset(group.age) for group in metadata.groups)


@dataclass(frozen=True)
class Drift:
    """How a file's age recipients differ from its rule's."""

    missing: tuple[str, ...]  # the rule names them, the file lists them in no group
    extra: tuple[str, ...]  # the file lists them, the rule names them in no group

    @property
    def regrouped(self) -> bool:
        """The same recipients, split differently across key groups."""
        return not self.missing and not self.extra


def drift(rule: CreationRule, metadata: SopsMetadata) -> Drift | None:
    """None when the file's age recipients are its rule's, key group by key group; else how they
    differ. Compared per group because sops needs a key from every group to decrypt: the same
    recipients split differently let different people read. The one answer for ``access``,
    ``reencrypt`` and the guard."""
    wanted, have = rule_groups(rule), file_groups(metadata)
    if wanted == have:
        return None
    flat_wanted, flat_have = frozenset().union(*wanted), frozenset().union(*have)
    return Drift(missing=tuple(sorted(flat_wanted - flat_have)), extra=tuple(sorted(flat_have - flat_wanted)))


def looks_like_sops_file(head: bytes) -> bool:
    """A cheap pre-filter on a file's bytes before parsing it."""
    return b"sops" in head and (b"ENC[" in head or b"mac" in head)

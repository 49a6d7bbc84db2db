"""``.sops.yaml`` as the source of truth: read it, edit it in place, write it atomically.

Every change is spliced into the original text at the offsets the parser reports, in the
style of the lines around it (indentation, dash offset, flow or block form, quoting), so
every byte a command did not mean to change survives, and an unchanged file writes back
byte-identical. After each splice the text is parsed again, so the model always describes
exactly the text that will be written.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, OpsError
from opssecrets.keys import plugin_of_recipient
from opssecrets.rules import CreationRule, refuse_symlink, rules_from_data
from opssecrets.yamltree import Node, parse

# \Z, not $: "$" also matches before a final newline, which let "pj\n" through
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_-]+\Z")
ROLE_PREFIXES = (("admin_", "admin"), ("host_", "host"), ("server_", "host"), ("machine_", "host"), ("user_", "engineer"))
PROJECT_PREFIX = "secrets/projects/"
# Real configs reach tens of KB (a 77 KiB one serves a cluster of about 40 hosts); reading
# runs at a few hundred KB a second, so the cap sits far above any real file. Hostile input
# is kept out by the depth, alias-expansion and read-time limits (opssecrets.yamltree).
MAX_CONFIG_CHARS = 4 * 1024 * 1024


def role_of(name: str | None) -> str:
    if name is None:
        return "unnamed"
    for prefix, role in ROLE_PREFIXES:
        if name.startswith(prefix):
            return role
    return "engineer"


def short_name(name: str) -> str:
    for prefix, _ in ROLE_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def check_name(name: str, what: str = "name") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BadInput(f"{what} {name!r} cannot be used: sops only parses anchor names of letters, digits, '_' and '-'")
    return name


_ROLE_COMMAND = {"admin": "'add-engineer NAME --admin'", "host": "'add-host NAME'", "engineer": "'add-engineer NAME'"}
_DEFAULT_PREFIX = {"admin": "admin_", "host": "host_", "engineer": ""}


def anchor_for(name: str, role: str) -> str:
    """The anchor a new recipient ``name`` of ``role`` gets (``dan`` -> ``admin_dan``).

    The anchor prefix is the role, so a name that already carries one (``admin_eve``,
    ``server_x``) is accepted only by the command that gives that role: otherwise
    ``add-engineer admin_eve`` would quietly make an admin."""
    check_name(name)
    for prefix, prefix_role in ROLE_PREFIXES:
        if name.startswith(prefix):
            if prefix_role != role:
                raise BadInput(
                    f"name {name!r} starts with {prefix!r}, which makes it {'an' if prefix_role[0] in 'ae' else 'a'} "
                    f"{prefix_role}: use {_ROLE_COMMAND[prefix_role]}, or a name without that prefix"
                )
            return name
    return _DEFAULT_PREFIX[role] + name


def project_regex(project: str) -> str:
    # project names are checked against NAME_PATTERN, whose characters need no escaping
    return f"^{PROJECT_PREFIX}{check_name(project, 'project name')}/"


# Adopted configs group keys instead of prefixing them: `- &hosts: [...]`, `hosts: [...]`
GROUP_ROLES = {
    "admins": "admin", "admin": "admin",
    "hosts": "host", "host": "host", "machines": "host", "machine": "host", "servers": "host", "server": "host",
    "users": "engineer", "user": "engineer",
}  # fmt: skip
# a folder named after a host under hosts/ (machines/, servers/): `hosts/kazuki/secrets\.yaml$`
HOST_PATH = re.compile(r"(?:^|/)(?:hosts|machines|servers)/((?:[^/]*/)*)")


@dataclass(frozen=True)
class Recipient:
    """A key that can read secrets: its anchor name (if any), its key text, its role.

    The role comes from the anchor prefix; else from the structure the key is listed in
    (``inferred``: role and where it came from), else it is an engineer."""

    name: str | None
    key: str
    inferred: tuple[str, str] | None = None

    @property
    def role(self) -> str:
        if self.inferred is not None and role_of(self.name) == "engineer":
            return self.inferred[0]
        return role_of(self.name)

    @property
    def role_from(self) -> str:
        if self.name is None:
            return "no anchor"
        if role_of(self.name) != "engineer" or self.name.startswith("user_"):
            prefix = next(p for p, _ in ROLE_PREFIXES if self.name.startswith(p))
            return f"anchor prefix {prefix}"
        if self.inferred is not None:
            return self.inferred[1]
        return "default (no role prefix)"

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.key[:12] + "..."

    @property
    def key_type(self) -> str:
        if self.key.startswith("age1"):
            return "age"
        if re.fullmatch(r"[0-9A-Fa-f]{40}", self.key):
            return "pgp"
        return "other"

    @property
    def plugin(self) -> str | None:
        """The age plugin (``yubikey``) an ``age1NAME1...`` recipient needs, else None."""
        return plugin_of_recipient(self.key)


@dataclass(frozen=True)
class Splice:
    start: int
    end: int
    text: str


def apply_splices(text: str, splices: Iterable[Splice]) -> str:
    ordered = sorted(splices, key=lambda s: (s.start, s.end), reverse=True)
    for a, b in itertools.pairwise(ordered):
        if b.end > a.start:
            raise AssertionError("overlapping edits")
    for splice in ordered:
        text = text[: splice.start] + splice.text + text[splice.end :]
    return text


class SopsConfig:
    """A parsed ``.sops.yaml`` plus the original text it came from."""

    def __init__(self, text: str, source: str = ".sops.yaml") -> None:
        self.text = text
        self.source = source
        first_newline = text.find("\n")
        self.newline = "\r\n" if first_newline > 0 and text[first_newline - 1] == "\r" else "\n"
        if len(text) > MAX_CONFIG_CHARS:
            raise BadInput(
                f"{source} is {len(text) // 1024} KiB; real .sops.yaml files are at most a few hundred KiB "
                f"(the limit here is {MAX_CONFIG_CHARS // (1024 * 1024)} MiB): fix the file"
            )
        root = parse(text, source)
        if root is None:
            root = Node("map", 0, 0)
        if root.kind != "map":
            raise BadInput(f"{source}: the top level must be a mapping with creation_rules; see .sops.yaml.example")
        self.root = root
        try:
            data = root.to_data()
        except BadInput as exc:
            raise BadInput(f"{source}: {exc.message}") from None
        self.rules: list[CreationRule] = rules_from_data(data, source)
        rules_node = root.get("creation_rules")
        self._rules_node = rules_node.resolved() if rules_node is not None else None
        self.rule_nodes: list[Node] = (
            [n.resolved() for n in self._rules_node.items] if self._rules_node and self._rules_node.kind == "seq" else []
        )
        self.recipients: list[Recipient] = self._collect_recipients()

    # ---------------------------------------------------------------- reading
    @classmethod
    def load(cls, path: Path) -> SopsConfig:
        refuse_symlink(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise BadInput(f"no {path.name} at {path.parent}: run 'opssecrets init' first") from exc
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path} is not UTF-8 text; fix its encoding") from exc
        return cls(text, str(path))

    def _anchored_key_nodes(self) -> list[Node]:
        out = []
        for node in self.root.walk():
            if node.kind == "scalar" and node.anchor is not None and _looks_like_key(node.value):
                out.append(node)
        return out

    def _collect_recipients(self) -> list[Recipient]:
        named: dict[str, Recipient] = {}
        seen_keys: set[str] = set()
        groups = self._group_roles()
        path_roles = self._path_roles()
        for node in self._anchored_key_nodes():
            assert node.anchor is not None
            key = node.value.strip()
            inferred = groups.get(id(node)) or path_roles.get((node.anchor, key))
            named.setdefault(node.anchor, Recipient(node.anchor, key, inferred))
            seen_keys.add(key)
        unnamed: dict[str, Recipient] = {}
        for rule in self.rules:
            for group in rule.groups:
                for key in group.age:
                    if key not in seen_keys:
                        unnamed.setdefault(key, Recipient(None, key))
        return list(named.values()) + list(unnamed.values())

    def _group_roles(self) -> dict[int, tuple[str, str]]:
        """Roles of anchored keys listed under a ``hosts:``/``users:``/``admins:``... group
        (a mapping key, or an anchor such as ``- &hosts:``), keyed by ``id(node)``."""
        out: dict[int, tuple[str, str]] = {}

        def visit(node: Node, found: tuple[str, str] | None) -> None:
            if node.kind == "scalar" and node.anchor is not None and found is not None:
                out[id(node)] = found
            here = _group_label(node.anchor) or found
            for item in node.items:
                visit(item, here)
            for key, value in node.pairs:
                label = _group_label(key.value if key.kind == "scalar" else None) or _group_label(key.anchor)
                visit(value, label or here)

        visit(self.root, None)
        return out

    def _path_roles(self) -> dict[tuple[str, str], tuple[str, str]]:
        """A key read by a rule for ``hosts/NAME/...`` under its own anchor name is that
        host's; keyed by ``(name, key)``. One pass over the rules (files can be large)."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for rule in self.rules:
            if rule.path_regex is None:
                continue
            for match in HOST_PATH.finditer(rule.path_regex):
                for folder in match.group(1).split("/"):
                    for key in rule.age_recipients:
                        out.setdefault((folder, key), ("host", f"path {rule.path_regex}"))
        return out

    def named(self) -> dict[str, Recipient]:
        return {r.name: r for r in self.recipients if r.name is not None}

    def find(self, name: str) -> Recipient:
        """The recipient a user means by ``name`` (``dan`` finds ``admin_dan``)."""
        matches = self.candidates(name)
        if not matches:
            known = ", ".join(sorted(short_name(n) for n in self.named())) or "none"
            raise BadInput(f"no recipient named {name!r} in {self.source} (known: {known}); see 'opssecrets recipients'")
        if len(matches) > 1:
            raise BadInput(f"{name!r} is ambiguous: {', '.join(r.label for r in matches)}; give the full name")
        return matches[0]

    def candidates(self, name: str) -> list[Recipient]:
        named = self.named()
        if name in named:
            return [named[name]]
        return [named[prefix + name] for prefix, _ in ROLE_PREFIXES if prefix + name in named]

    def name_for_key(self, key: str) -> str | None:
        for recipient in self.recipients:
            if recipient.key == key and recipient.name is not None:
                return recipient.name
        return None

    def label_for_key(self, key: str) -> str:
        name = self.name_for_key(key)
        return short_name(name) if name is not None else key[:12] + "..."

    def rules_with(self, key: str) -> list[CreationRule]:
        return [rule for rule in self.rules if key in rule.age_recipients]

    def admins(self) -> list[Recipient]:
        return [r for r in self.recipients if r.role == "admin" and r.key_type == "age"]

    def project_rule(self, project: str) -> CreationRule | None:
        wanted = project_regex(project)
        for rule in self.rules:
            if rule.path_regex == wanted or (
                rule.path_regex is not None
                and rule.path_regex.rstrip("$")
                in (
                    f"^{PROJECT_PREFIX}{project}/",
                    f"{PROJECT_PREFIX}{project}/",
                )
            ):
                return rule
        return None

    # ------------------------------------------------------------- text helpers
    def _line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def _line_end(self, index: int) -> int:
        """Where the line holding ``index`` ends: its newline, or the ``\r`` of a CRLF."""
        end = self.text.find("\n", index)
        if end == -1:
            return len(self.text)
        return end - 1 if end > index and self.text[end - 1] == "\r" else end

    def _content_end(self, node: Node) -> int:
        end = node.end
        while end > node.start and self.text[end - 1] in " \t\r\n":
            end -= 1
        return end

    def _column(self, index: int) -> int:
        return index - self._line_start(index)

    def _item_prefix(self, item: Node) -> str:
        """The text before a block sequence item on its line (``'  - '``), reused for a sibling."""
        line_start = self._line_start(item.start)
        prefix = self.text[line_start : item.start]
        if prefix.strip() == "-" and prefix.lstrip(" ").startswith("-"):
            return prefix
        dash = self.text.rfind("-", line_start, item.start)
        return " " * (dash - line_start if dash >= 0 else self._column(item.start)) + "- "

    def _delete_lines(self, first: int, last_content_end: int) -> Splice:
        """Delete whole lines from the one holding ``first`` through the one holding the end."""
        start = self._line_start(first)
        end = self._line_end(last_content_end)
        if start > 0:
            cut = start - 1
            if cut > 0 and self.text[cut - 1] == "\r":
                cut -= 1
            return Splice(cut, end, "")
        newline = len(self.newline) if self.text.startswith(self.newline, end) else 0
        return Splice(0, end + newline, "")

    def _owns_line(self, node_start: int, allow_dash: bool) -> bool:
        prefix = self.text[self._line_start(node_start) : node_start].strip()
        return prefix == "" or (allow_dash and prefix == "-")

    def _edited(self, splices: Sequence[Splice]) -> SopsConfig:
        return SopsConfig(apply_splices(self.text, [Splice(s.start, s.end, self._own_newlines(s.text)) for s in splices]), self.source)

    def _own_newlines(self, text: str) -> str:
        """``text`` with the file's own line ending (a CRLF file gets CRLF lines)."""
        return text.replace("\n", self.newline) if self.newline != "\n" else text

    # ------------------------------------------------------------- groups
    def _group_nodes(self, rule_index: int) -> list[Node]:
        rule_node = self.rule_nodes[rule_index]
        if rule_node.kind != "map":
            raise BadInput(f"{self.source}: creation rule {rule_index + 1} is not a mapping")
        groups = self.rules[rule_index]
        if groups.uses_key_groups:
            key_groups = rule_node.get("key_groups")
            assert key_groups is not None
            return [g.resolved() for g in key_groups.resolved().items]
        return [rule_node]

    def _alias_users(self, anchor: str) -> list[Node]:
        return [n for n in self.root.walk() if n.kind == "alias" and n.value == anchor]

    # ------------------------------------------------------------- edits
    def with_recipient_defined(self, name: str, key: str) -> SopsConfig:
        """Add ``- &name key`` to the top-level ``keys:`` list (created if absent)."""
        check_name(name)
        entry = self.root.entry("keys")
        if entry is None:
            first_key = self.root.pairs[0][0] if self.root.pairs else None
            dash = " " * self._rules_dash_column()
            block = f"keys:\n{dash}- &{name} {key}\n"
            if first_key is None:
                tail = "" if self.text.endswith("\n") or not self.text else "\n"
                return SopsConfig(self.text + self._own_newlines(tail + block), self.source)
            at = self._line_start(first_key.start)
            return self._edited([Splice(at, at, block)])
        key_node, value = entry
        value = value.resolved()
        if value.kind == "scalar" and value.value == "" and value.style is None:
            at = self._line_end(key_node.end)
            return self._edited([Splice(at, at, f"\n{' ' * self._rules_dash_column()}- &{name} {key}")])
        if value.kind == "seq":
            return self._edited([self._append_to_seq(value, f"&{name} {key}")])
        if value.kind == "map" and not value.flow and value.pairs:
            last_value = value.pairs[-1][1]
            at = self._line_end(self._content_end(last_value))
            indent = " " * self._column(value.pairs[0][0].start)
            return self._edited([Splice(at, at, f"\n{indent}{name}: &{name} {key}")])
        raise BadInput(f"{self.source}: 'keys:' has a shape opssecrets cannot extend; make it a list of '- &name age1...'")

    def _rules_dash_column(self) -> int:
        if self._rules_node is not None and self._rules_node.kind == "seq" and not self._rules_node.flow and self._rules_node.items:
            return self._column(self._rules_node.start)
        return 2

    def _append_to_seq(self, seq: Node, item_text: str) -> Splice:
        if seq.flow:
            if not seq.items:
                return Splice(seq.start + 1, seq.start + 1, item_text)
            sep = ", "
            if len(seq.items) >= 2:
                sep = self.text[seq.items[0].end : seq.items[1].start]
            last = seq.items[-1]
            return Splice(last.end, last.end, sep + item_text)
        last = seq.items[-1]
        at = self._line_end(self._content_end(last))
        return Splice(at, at, "\n" + self._item_prefix(last) + item_text)

    def _age_home(self, group: Node) -> tuple[Node, bool] | None:
        """The map whose ``age`` entry gives ``group`` its age recipients, and whether it is
        shared with other rules (reached through a ``<<`` merge)."""
        if group.kind != "map":
            return None
        if group.entry("age") is not None:
            return group, False
        for merged in group.merged_maps():
            home = self._age_home(merged)
            if home is not None:
                return home[0], True
        return None

    def _refuse_shared(self, rule_index: int) -> BadInput:
        return BadInput(
            f"{self.source}: creation rule {rule_index + 1} takes its age recipients from a shared anchor (<<: *...); "
            "changing it would change every rule that shares it: use --admin, or edit the file by hand"
        )

    def with_key_in_rule(self, rule_index: int, recipient: Recipient, *, through_shared: bool = False) -> SopsConfig:
        """Give ``recipient`` access to rule ``rule_index``, in the form the rule already uses.

        ``through_shared`` allows editing a recipient list that several rules share through
        a YAML merge (right when the recipient joins every rule anyway)."""
        return self.with_key_in_rules([rule_index], recipient, through_shared=through_shared)

    def with_key_in_rules(self, rule_indexes: Sequence[int], recipient: Recipient, *, through_shared: bool = False) -> SopsConfig:
        """:meth:`with_key_in_rule` for several rules, spliced in one pass: a config with
        hundreds of rules is parsed once, not once per rule."""
        splices: list[Splice] = []
        homes_done: set[int] = set()
        for rule_index in rule_indexes:
            if recipient.key in self.rules[rule_index].age_recipients:
                continue
            groups = self._group_nodes(rule_index)
            homes = [h for h in (self._age_home(g) for g in groups) if h is not None]
            home, shared = homes[0] if homes else (groups[0], False)
            if shared and not through_shared:
                raise self._refuse_shared(rule_index)
            if id(home) in homes_done:  # one list shared by several rules (a `<<` merge)
                continue
            homes_done.add(id(home))
            splices.append(self._add_to_group(home, recipient, rule_index))
        return self._edited(splices) if splices else self

    def _reference(self, recipient: Recipient, at: int) -> str:
        """``*name`` when the anchor is defined before ``at`` (YAML needs that), else the key."""
        if recipient.name is None:
            return recipient.key
        anchor = next((n for n in self.root.walk() if n.anchor == recipient.name), None)
        return f"*{recipient.name}" if anchor is not None and anchor.end <= at else recipient.key

    def _add_to_group(self, group: Node, recipient: Recipient, rule_index: int) -> Splice:
        if group.kind != "map" or group.flow:
            raise BadInput(
                f"{self.source}: creation rule {rule_index + 1} is written in flow style; opssecrets edits block-style rules only"
            )
        entry = group.entry("age")
        if entry is None:
            last_value = group.pairs[-1][1]
            at = self._line_end(self._content_end(last_value))
            indent = " " * self._column(group.pairs[0][0].start)
            ref = self._reference(recipient, at)
            # inside key_groups sops reads every key type as a list: a scalar there makes it
            # refuse the whole config ("cannot unmarshal !!str into []string")
            value_text = f"[{ref}]" if self.rules[rule_index].uses_key_groups else ref
            return Splice(at, at, f"\n{indent}age: {value_text}")
        _, value = entry
        ref = self._reference(recipient, value.start)
        if value.kind == "alias":
            if value.resolved().kind != "scalar":
                raise BadInput(
                    f"{self.source}: creation rule {rule_index + 1} takes its age recipients from alias *{value.value}; "
                    "add the key to that list by hand, or write the rule's recipients out"
                )
            # `age: *kazuki` becomes `age: [*kazuki, *new]`; removal turns it back (see _drop_item)
            return Splice(value.start, value.end, f"[*{value.value}, {ref}]")
        if value.kind == "seq":
            items = value.items
            use_alias = ref.startswith("*") and (not items or any(i.kind == "alias" for i in items))
            if use_alias:
                text = ref
            else:
                quote = items[-1].style if items and items[-1].kind == "scalar" and items[-1].style in ("'", '"') else ""
                text = f"{quote}{recipient.key}{quote}"
            if not items and not value.flow:
                raise BadInput(f"{self.source}: creation rule {rule_index + 1} has an empty age list; fix it by hand")
            return self._append_to_seq(value, text)
        if value.kind == "scalar":
            keys = [k.strip() for k in value.value.split(",") if k.strip()]
            if not keys:
                at = value.start
                lead = "" if self.text[at - 1 : at] == " " else " "
                return Splice(at, value.end, lead + ref)
            span = self.text[value.start : value.end]
            last_at = value.start + span.rfind(keys[-1])
            insert_at = last_at + len(keys[-1])
            if value.style in ("|", ">"):
                line_start = self._line_start(last_at)
                indent = self.text[line_start:last_at]
                indent = indent[: len(indent) - len(indent.lstrip())]
                sep = ",\n" + indent
            else:
                sep = ", " if ", " in span else ","
            return Splice(insert_at, insert_at, sep + recipient.key)
        raise BadInput(f"{self.source}: creation rule {rule_index + 1}: 'age' must be a list or a comma-separated string")

    def with_key_removed_from_rule(self, rule_index: int, key: str, *, through_shared: bool = False) -> SopsConfig:
        """Remove every occurrence of ``key`` from rule ``rule_index``'s age recipients."""
        config = self
        while key in config.rules[rule_index].age_recipients:
            config = config._edited(config._removal_splices(rule_index, key, through_shared))
        return config

    def with_key_removed_from_rules(self, key: str, *, through_shared: bool = False) -> SopsConfig:
        """Remove ``key`` from every rule: one splice per rule in a single pass while the
        splices are independent, then rule by rule for whatever is left (a key listed twice)."""
        splices: dict[tuple[int, int, str], Splice] = {}
        for rule in self.rules_with(key):
            for splice in self._removal_splices(rule.index, key, through_shared):
                splices.setdefault((splice.start, splice.end, splice.text), splice)
        ordered = sorted(splices.values(), key=lambda s: (s.start, s.end))
        config = self
        if all(a.end <= b.start for a, b in itertools.pairwise(ordered)):
            config = self._edited(ordered) if ordered else self
        for rule in config.rules_with(key):
            config = config.with_key_removed_from_rule(rule.index, key, through_shared=through_shared)
        return config

    def _removal_splices(self, rule_index: int, key: str, through_shared: bool) -> list[Splice]:
        for home_of in self._group_nodes(rule_index):
            home = self._age_home(home_of)
            if home is None:
                continue
            group, shared = home
            entry = group.entry("age")
            assert entry is not None
            key_node, value = entry
            if shared and key in _flatten(value.resolved()) and not through_shared:
                raise self._refuse_shared(rule_index)
            resolved = value.resolved()
            if resolved.kind == "seq" and value.kind == "seq":
                matches = [i for i, item in enumerate(value.items) if _scalar_value(item) == key]
                if not matches:
                    continue
                if len(matches) == len(value.items):
                    return [self._drop_entry(group, key_node, value, rule_index)]
                return [self._drop_item(value, matches[0])]
            if resolved.kind == "scalar" and value.kind in ("scalar", "alias"):
                keys = [k.strip() for k in resolved.value.split(",") if k.strip()]
                if key not in keys:
                    continue
                if len(keys) == 1:
                    return [self._drop_entry(group, key_node, value, rule_index)]
                return [self._drop_from_string(value, keys, key)]
            if value.kind == "alias" and key in _flatten(resolved):
                raise BadInput(
                    f"{self.source}: creation rule {rule_index + 1} takes its age recipients from alias *{value.value}; "
                    "remove the key from that list by hand"
                )
        raise AssertionError("key listed in rule but not found in its text")

    def _drop_item(self, seq: Node, index: int) -> Splice:
        item = seq.items[index]
        if item.anchor is not None:
            self._refuse_if_aliased(item.anchor)
        if seq.flow and len(seq.items) == 2 and index == 1 and seq.items[0].kind == "alias":
            first = self.text[seq.items[0].start : seq.items[0].end]
            if self.text[seq.start : seq.end] == f"[{first}, {self.text[item.start : item.end]}]":
                return Splice(seq.start, seq.end, first)
        if seq.flow:
            if index > 0:
                return Splice(seq.items[index - 1].end, item.end, "")
            if len(seq.items) > 1:
                return Splice(item.start, seq.items[1].start, "")
            return Splice(item.start, item.end, "")
        if not self._owns_line(item.start, allow_dash=True):
            raise BadInput(f"{self.source}: line {self.text.count(chr(10), 0, item.start) + 1}: an item shares its line; edit it by hand")
        return self._delete_lines(item.start, self._content_end(item))

    def _drop_entry(self, group: Node, key_node: Node, value: Node, rule_index: int) -> Splice:
        others = [k for k, _ in group.pairs if k is not key_node]
        if not others or (self.rules[rule_index].uses_key_groups and not others):
            raise BadInput(
                f"{self.source}: removing that key would leave creation rule {rule_index + 1} (or one of its key groups) "
                "with no recipient; add another recipient first, or delete the rule"
            )
        for node in value.walk():
            if node.anchor is not None:
                self._refuse_if_aliased(node.anchor)
        if not self._owns_line(key_node.start, allow_dash=False):
            raise BadInput(
                f"{self.source}: creation rule {rule_index + 1}: its 'age' entry shares a line with '-'; "
                "move 'age:' below another key of the group, or edit it by hand"
            )
        return self._delete_lines(key_node.start, self._content_end(value))

    def _drop_from_string(self, value: Node, keys: list[str], key: str) -> Splice:
        span_start, span = value.start, self.text[value.start : value.end]
        position = keys.index(key)
        key_at = span_start + _find_key(span, key)
        if position > 0:
            previous = keys[position - 1]
            prev_end = span_start + _find_key(span, previous) + len(previous)
            return Splice(prev_end, key_at + len(key), "")
        following = keys[1]
        next_at = span_start + _find_key(span, following)
        return Splice(key_at, next_at, "")

    def _refuse_if_aliased(self, anchor: str) -> None:
        if self._alias_users(anchor):
            raise BadInput(
                f"{self.source}: key &{anchor} is defined inside a rule and used elsewhere; "
                "move its definition to the top-level 'keys:' list first"
            )

    def without_recipient(self, name: str) -> SopsConfig:
        """Remove the anchored definition of ``name`` (its aliases must be gone already)."""
        users = self._alias_users(name)
        if users:
            raise AssertionError(f"alias *{name} still in use")
        node = next((n for n in self.root.walk() if n.anchor == name), None)
        if node is None:
            return self
        keys_entry = self.root.entry("keys")
        container, pair_key = self._container_of(node)
        if container is None:
            raise BadInput(f"{self.source}: cannot find where &{name} is defined; remove it by hand")
        if keys_entry is not None and container is keys_entry[1].resolved() and self._entries(container) == 1:
            key_node = keys_entry[0]
            return self._edited([self._delete_lines(key_node.start, self._content_end(keys_entry[1]))])
        if container.kind == "seq":
            return self._edited([self._drop_item(container, container.items.index(node))])
        assert pair_key is not None
        if not self._owns_line(pair_key.start, allow_dash=False):
            raise BadInput(f"{self.source}: &{name} shares its line with other keys; remove it by hand")
        return self._edited([self._delete_lines(pair_key.start, self._content_end(node))])

    @staticmethod
    def _entries(node: Node) -> int:
        return len(node.items) if node.kind == "seq" else len(node.pairs)

    def _container_of(self, target: Node) -> tuple[Node | None, Node | None]:
        for node in self.root.walk():
            if node.kind == "seq" and any(item is target for item in node.items):
                return node, None
            if node.kind == "map":
                for k, v in node.pairs:
                    if v is target:
                        return node, k
        return None, None

    def with_key_replaced(self, old: str, new: str) -> SopsConfig:
        """Replace every occurrence of key ``old`` (definitions, list items, comma strings)."""
        splices: list[Splice] = []
        for node in self.root.walk():
            if node.kind != "scalar":
                continue
            keys = [k.strip() for k in node.value.split(",")]
            if old not in keys:
                continue
            span = self.text[node.start : node.end]
            at = _find_key(span, old)
            splices.append(Splice(node.start + at, node.start + at + len(old), new))
        return self._edited(splices)

    def with_rule_inserted(self, position: int, path_regex: str, members: Sequence[Recipient], comment: str | None = None) -> SopsConfig:
        """Insert a new creation rule (with a ``# comment`` line above it) before rule ``position``, or at the end."""
        rules_entry = self.root.entry("creation_rules")
        if (
            rules_entry is None
            or self._rules_node is None
            or self._rules_node.kind != "seq"
            or self._rules_node.flow
            or not self._rules_node.items
        ):
            raise BadInput(f"{self.source}: no block-style creation_rules list to add a rule to; start from 'opssecrets init'")
        text = self._render_rule(path_regex, members)
        if comment is not None:
            text = f"{' ' * self._rules_dash_column()}# {comment}\n{text}"
        items = self._rules_node.items
        if position < len(items):
            at = self._line_start(items[position].start)
            at = self._above_comments(at)
            blank = "\n" if self._rules_separated_by_blank_lines() else ""
            return self._edited([Splice(at, at, text + "\n" + blank)])
        at = self._line_end(self._content_end(items[-1]))
        blank = "\n" if self._rules_separated_by_blank_lines() else ""
        return self._edited([Splice(at, at, "\n" + blank + text)])

    def _above_comments(self, at: int) -> int:
        while at > 0:
            prev_start = self._line_start(at - 1)
            line = self.text[prev_start : at - 1].strip()
            if not line.startswith("#"):
                break
            at = prev_start
        return at

    def _rules_separated_by_blank_lines(self) -> bool:
        assert self._rules_node is not None
        items = self._rules_node.items
        if len(items) < 2:
            return False
        between = self.text[self._content_end(items[0]) : self._line_start(items[1].start)]
        return bool(re.search(r"\n[ \t\r]*\n", between))

    def _render_rule(self, path_regex: str, members: Sequence[Recipient]) -> str:
        dash = self._rules_dash_column()
        indent = " " * (dash + 2)
        refs = [f"*{m.name}" if m.name is not None else m.key for m in members]
        group_off, list_off = self._key_group_offsets()
        regex_text = path_regex if re.fullmatch(r"[A-Za-z0-9^$/._\\-]+", path_regex) else "'" + path_regex.replace("'", "''") + "'"
        lines = [f"{' ' * dash}- path_regex: {regex_text}", f"{indent}key_groups:"]
        group_indent = " " * (dash + 2 + group_off)
        list_indent = " " * (dash + 2 + group_off + 2 + list_off)
        lines.append(f"{group_indent}- age:")
        lines.extend(f"{list_indent}- {ref}" for ref in refs)
        return "\n".join(lines)

    def _key_group_offsets(self) -> tuple[int, int]:
        """How far existing rules indent key_groups' dashes and the age list's dashes."""
        for rule_node in self.rule_nodes:
            if rule_node.kind != "map":
                continue
            entry = rule_node.entry("key_groups")
            if entry is None or entry[1].kind != "seq" or entry[1].flow or not entry[1].items:
                continue
            key_col = self._column(entry[0].start)
            group_off = self._column(entry[1].start) - key_col
            group = entry[1].items[0]
            age = group.entry("age") if group.kind == "map" else None
            if age is not None and age[1].kind == "seq" and not age[1].flow and age[1].items:
                return group_off, self._column(age[1].start) - self._column(age[0].start)
            return group_off, 2
        return 2, 2


def recipient_names(config_path: Path) -> dict[str, str]:
    """age recipient -> short name (``admin_dan`` -> ``dan``) from ``.sops.yaml``'s anchors;
    empty when the file is missing or unreadable (a symlink is refused, not read as empty)."""
    refuse_symlink(config_path)
    try:
        config = SopsConfig.load(config_path)
    except (OpsError, OSError, ValueError):
        return {}
    return {r.key: short_name(r.name) for r in config.recipients if r.name is not None}



def _group_label(label: str | None) -> tuple[str, str] | None:
    if label is None:
        return None
    # go-yaml (sops) ends an anchor name at ':', ruamel keeps it: `&users:` is `users` to sops
    word = label.strip().rstrip(":").strip().lower()
    role = GROUP_ROLES.get(word)
    return (role, f"listed under {word}") if role is not None else None


def _looks_like_key(text: str) -> bool:
    value = text.strip()
    return value.startswith("age1") or bool(re.fullmatch(r"[0-9A-Fa-f]{40}", value)) or value.startswith("arn:aws:kms:")


def _scalar_value(node: Node) -> str | None:
    resolved = node.resolved()
    return resolved.value.strip() if resolved.kind == "scalar" else None


def _flatten(node: Node) -> list[str]:
    if node.kind == "scalar":
        return [k.strip() for k in node.value.split(",") if k.strip()]
    if node.kind == "seq":
        return [k for item in node.items for k in _flatten(item.resolved())]
    return []


def _find_key(span: str, key: str) -> int:
    """Where ``key`` stands in ``span`` as a whole key (not a prefix of a longer one)."""
    for match in re.finditer(re.escape(key), span):
        after = span[match.end() : match.end() + 1]
        if not after or not (after.isalnum()):
            return match.start()
    raise AssertionError("key not found in its scalar's text")

"""A YAML document as nodes that know where they stand in the original text.

Built from a YAML event stream (libyaml's, else ruamel.yaml's round-trip parser), so every node carries the
character offsets of its first and last character, its anchor, its style and, for an
alias, the occurrence itself rather than the anchored node. Editing ``.sops.yaml`` splices
text at those offsets, which is how an unchanged byte stays unchanged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opssecrets import yamllimits
from opssecrets.errors import BadInput

# A .sops.yaml is a few levels deep and lists a few dozen keys. Past these bounds the input
# is hostile or broken (see opssecrets.yamllimits): parsers slow down or crash, Python's
# recursion ends in RecursionError, and aliases of aliases expand exponentially.
MAX_DEPTH = yamllimits.MAX_DEPTH
MAX_EXPANDED = 100_000
MAX_READ_SECONDS = 30.0  # a 4 MiB file of dense anchors reads in well under this


class _Budget:
    """How many more nodes ``to_data`` may produce (aliases expanded), and how deep."""

    def __init__(self) -> None:
        self.nodes = MAX_EXPANDED
        self.depth = 0


@dataclass(eq=False)
class Node:
    kind: str  # "scalar", "alias", "seq", "map"
    start: int
    end: int
    anchor: str | None = None
    value: str = ""  # scalar text (after unquoting/folding), or alias target name
    style: str | None = None  # scalar: None (plain), "'", '"', "|", ">"; collections: "flow" or None
    items: list[Node] = field(default_factory=list)  # seq items
    pairs: list[tuple[Node, Node]] = field(default_factory=list)  # map entries
    target: Node | None = None  # alias: the anchored node

    @property
    def flow(self) -> bool:
        return self.style == "flow"

    def resolved(self) -> Node:
        node = self
        while node.kind == "alias" and node.target is not None:
            node = node.target
        return node

    def get(self, key: str) -> Node | None:
        for k, v in self.pairs:
            if k.kind == "scalar" and k.value == key:
                return v
        return None

    def entry(self, key: str) -> tuple[Node, Node] | None:
        for k, v in self.pairs:
            if k.kind == "scalar" and k.value == key:
                return k, v
        return None

    @property
    def is_merge_key(self) -> bool:
        return self.kind == "scalar" and self.value == "<<" and self.style is None

    def merged_maps(self) -> list[Node]:
        """The maps merged into this one with ``<<: *x`` or ``<<: [*x, *y]``, in priority order."""
        out: list[Node] = []
        for key, value in self.pairs:
            if not key.is_merge_key:
                continue
            target = value.resolved()
            if target.kind == "map":
                out.append(target)
            elif target.kind == "seq":
                out.extend(item.resolved() for item in target.items if item.resolved().kind == "map")
        return out

    def walk(self) -> Iterator[Node]:
        yield self
        for item in self.items:
            yield from item.walk()
        for k, v in self.pairs:
            yield from k.walk()
            yield from v.walk()

    def to_data(self, budget: _Budget | None = None) -> Any:
        """Plain Python data, aliases resolved, plain scalars typed the way sops cares about.

        Raises BadInput when aliases expand past MAX_EXPANDED nodes (an alias bomb) or
        nest past a sane depth."""
        budget = budget if budget is not None else _Budget()
        budget.nodes -= 1
        if budget.nodes < 0 or budget.depth > 4 * MAX_DEPTH:
            raise BadInput(
                f"its aliases expand to more than {MAX_EXPANDED} values or {4 * MAX_DEPTH} levels "
                "(an alias bomb?); a .sops.yaml needs a few dozen: write the keys out"
            )
        node = self.resolved()
        budget.depth += 1
        try:
            if node.kind == "map":
                data: dict[str, Any] = {}
                for merged in node.merged_maps():
                    for key, value in merged.to_data(budget).items():
                        data.setdefault(key, value)
                explicit = {str(k.resolved().to_data(budget)): v.to_data(budget) for k, v in node.pairs if not k.is_merge_key}
                data.update(explicit)
                return data
            if node.kind == "seq":
                return [item.to_data(budget) for item in node.items]
        finally:
            budget.depth -= 1
        if node.style is None:
            return _plain_scalar(node.value)
        return node.value


def _plain_scalar(text: str) -> Any:
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if text.isdigit():
        return int(text)
    return text


def _refuse_duplicate_keys(node: Node, text: str, source: str) -> None:
    """sops refuses a mapping with a key twice (two ``creation_rules:``); editing the first
    while reading the last would change rules nobody sees, so refuse it too."""
    seen: set[str] = set()
    for key, _ in node.pairs:
        if key.kind != "scalar" or key.is_merge_key:
            continue
        if key.value in seen:
            line = text.count("\n", 0, key.start) + 1
            raise BadInput(f"{source}: line {line}: the key {key.value!r} appears twice in one mapping (sops refuses that); keep one")
        seen.add(key.value)


def parse(text: str, source: str) -> Node | None:
    """Parse the first document of ``text``; None for an empty document.

    Raises BadInput (naming ``source`` and the line) for invalid YAML or an alias used
    before its anchor.
    """

    try:
        events = yamllimits.round_trip_events(text)
    except yamllimits.TooDeep as exc:
        raise BadInput(f"{source}: {exc.where}nested more than {MAX_DEPTH} levels deep; a .sops.yaml is a few levels deep") from None
    builder = _TreeBuilder(text, source)
    try:
        deadline = time.monotonic() + MAX_READ_SECONDS
        for count, event in enumerate(events):
            if count % 4096 == 0 and time.monotonic() > deadline:
                raise BadInput(f"{source}: reading it took more than {MAX_READ_SECONDS:.0f} s; a .sops.yaml is far smaller: fix the file")
            if type(event).__name__ == "DocumentEndEvent" and builder.root is not None:
                break
            builder.feed(event)
    except Exception as exc:
        if not isinstance(exc, _yaml_errors()):  # imports ruamel only now: `check` never loads it
            raise
        raise _invalid_yaml(source, exc) from exc
    return builder.root


class _TreeBuilder:
    """Builds the node tree from parser events: containers open and close on a stack, and
    a mapping's children alternate between a pending key and its value."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.root: Node | None = None
        self.anchors: dict[str, Node] = {}
        self.stack: list[Node] = []
        self.pending_key: list[Node | None] = []

    def feed(self, event: Any) -> None:
        kind_of = type(event).__name__
        if kind_of == "ScalarEvent":
            self._scalar(event)
        elif kind_of == "AliasEvent":
            self._alias(event)
        elif kind_of in ("SequenceStartEvent", "MappingStartEvent"):
            self._open(event, "seq" if kind_of == "SequenceStartEvent" else "map")
        elif kind_of in ("SequenceEndEvent", "MappingEndEvent"):
            self._close(event)

    def _scalar(self, event: Any) -> None:
        # ruamel's round-trip parser marks fold points in folded scalars with BEL;
        # libyaml says '' for the plain style
        value = event.value.replace("\a", "") if event.style == ">" else event.value
        node = Node("scalar", event.start_mark.index, event.end_mark.index, event.anchor, value, event.style or None)
        self._remember(node)
        self._attach(node)

    def _alias(self, event: Any) -> None:
        target = self.anchors.get(event.anchor)
        line = event.start_mark.line + 1
        if target is None and not re.search(rf"&{re.escape(event.anchor)}(?![A-Za-z0-9_-])", self.text):
            raise BadInput(
                f"{self.source}: line {line}: alias *{event.anchor} has no anchor "
                f"&{event.anchor} anywhere in the file; define it (in 'keys:') or fix the name"
            )
        if target is None:
            raise BadInput(
                f"{self.source}: line {line}: alias *{event.anchor} is used before its anchor "
                f"&{event.anchor} is defined; move the anchored key above its first use"
            )
        self._attach(Node("alias", event.start_mark.index, event.end_mark.index, None, event.anchor, None, target=target))

    def _open(self, event: Any, kind: str) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise BadInput(
                f"{self.source}: line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; "
                "a .sops.yaml is a few levels deep: fix the file"
            )
        node = Node(kind, event.start_mark.index, event.start_mark.index, event.anchor, style="flow" if event.flow_style else None)
        self._remember(node)
        self._attach(node)
        self.stack.append(node)
        self.pending_key.append(None)

    def _close(self, event: Any) -> None:
        node = self.stack.pop()
        self.pending_key.pop()
        _refuse_duplicate_keys(node, self.text, self.source)
        children = node.items or [n for pair in node.pairs for n in pair]
        if node.flow:
            node.end = event.end_mark.index
        elif children:
            node.end = max(child.end for child in children)

    def _attach(self, node: Node) -> None:
        if not self.stack:
            if self.root is None:
                self.root = node
            return
        parent = self.stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        else:
            key = self.pending_key[-1]
            if key is None:
                self.pending_key[-1] = node
            else:
                parent.pairs.append((key, node))
                self.pending_key[-1] = None

    def _remember(self, node: Node) -> None:
        if node.anchor is not None:
            self.anchors[node.anchor] = node


def _invalid_yaml(source: str, exc: Exception) -> BadInput:
    """The parser's error as one line: where, what, and (for a bad anchor name) sops' rule."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or exc.__class__.__name__
    if "alphabetic or numeric" in problem:
        problem += ": anchor and alias names are letters, digits, '_' and '-', as sops reads them"
    return BadInput(f"{source}: {where}not valid YAML ({problem}); fix the syntax")


def _yaml_errors() -> tuple[type[Exception], ...]:
    from ruamel.yaml.error import YAMLError as RuamelError

    try:
        from yaml import YAMLError
    except ImportError:
        return (RuamelError,)
    return (RuamelError, YAMLError)


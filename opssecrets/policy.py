"""Secret-kind policy: how each kind of secret is recognised, obtained, verified and aged.

The default policy is ``kinds.toml`` shipped in the package (``opssecrets.policies``, the
top-level ``policies/`` folder of a source checkout). A repository extends or overrides it
with its own ``policies/*.toml`` files: every file there is read, and its ``[kinds.NAME]``
``[platform]`` and ``[notify]`` tables are taken (other tables, such as the guard's leak rules, belong to
other readers and are ignored here). A repository table sets only the fields it names; the
rest come from the default of the same name. Files are read in name order; a later file
overrides an earlier one field by field.

Matching order for a key: kinds defined (or overridden) by the repository, in the order
they first appear; then the remaining defaults in their file order; the ``fallback`` kind
last. Every error names the file and line, and is a ``BadInput`` (exit 2).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opssecrets.errors import BadInput
from opssecrets.sops import index_for_key

DEFAULT_POLICY_FILE = "kinds.toml"
REPO_POLICY_DIR = "policies"
SOURCES = ("pasted", "generated", "either")
VERIFIERS = ("none", "slack-auth-test", "slack-apps-connections-open", "matrix-registration-token")
STEP_PLACEHOLDERS = ("host", "homeserver", "deploy", "file", "key", "kind", "services", "service", "index")

_KIND_FIELDS: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "key_pattern": str,
    "fallback": bool,
    "value_pattern": str,
    "value_hint": str,
    "max_age_days": int,
    "source": str,
    "generate_bytes": int,
    "obtain": str,
    "verify": str,
    "verify_after_deploy": bool,
    "expected_team": str,
    "host": str,
    "homeserver": str,
    "services": list,
    "steps": list,
}
_PLATFORM_FIELDS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "homeserver": str,
    "deploy": str,
    "default_file": str,
    "forgejo_url": str,
}
_NOTIFY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "room": str,
    "token_key": str,
}
_ROOM_ID = re.compile(r"![^\s:]+(:\S+)?")  # room version 12 ids carry no server part


def default_policy_dir() -> Path:
    """The folder holding the shipped policy files, installed or in a source checkout.

    Installed, ``opssecrets.policies`` is a package (pyproject maps it to ``policies/``);
    in a source checkout run from ``PYTHONPATH`` it is not importable, and the folder is the
    ``policies/`` next to the ``opssecrets`` package.
    """
    try:
        spec = importlib.util.find_spec("opssecrets.policies")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / DEFAULT_POLICY_FILE).is_file():
                return Path(location)
    return Path(__file__).resolve().parent.parent / "policies"


@dataclass(frozen=True)
class Platform:
    host: str = ""
    homeserver: str = ""
    deploy: str = ""
    default_file: str = "secrets/secrets.yaml"
    forgejo_url: str = ""  # where add-engineer --forgejo-user finds {url}/{user}.keys


@dataclass(frozen=True)
class Notify:
    """Where ``status --notify`` posts: a Matrix room, as the bot whose access token is the
    value of ``token_key`` in the platform's default secrets file."""

    room: str
    token_key: str


@dataclass(frozen=True)
class SecretKind:
    name: str
    description: str = ""
    key_pattern: re.Pattern[str] | None = None
    fallback: bool = False
    value_pattern: re.Pattern[str] | None = None
    value_hint: str = ""
    max_age_days: int | None = None
    source: str = "either"
    generate_bytes: int = 32
    obtain: str = ""
    verify: str = "none"
    verify_after_deploy: bool = False
    expected_team: str | None = None
    host: str = ""
    homeserver: str = ""
    services: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    origin: str = ""

    def matches_key(self, key: str) -> bool:
        if self.fallback:
            return True
        return self.key_pattern is not None and self.key_pattern.fullmatch(key) is not None

    def accepts_value(self, value: str) -> bool:
        return self.value_pattern is None or self.value_pattern.fullmatch(value) is not None

    @property
    def can_generate(self) -> bool:
        return self.source in ("generated", "either")

    def runbook_steps(self, *, file: str, key: str, deploy: str) -> list[str]:
        """The steps printed after a rotation, placeholders filled in."""
        values = _step_values(self, file=file, key=key, deploy=deploy)
        return [step.format_map(values) for step in self.steps]


def _step_values(kind: SecretKind, *, file: str, key: str, deploy: str) -> dict[str, str]:
    return {
        "host": kind.host,
        "homeserver": kind.homeserver,
        "deploy": deploy,
        "file": file,
        "key": key,
        "kind": kind.name,
        "services": ", ".join(kind.services) if kind.services else "the services that read it",
        "service": kind.services[0] if kind.services else "the service that reads it",
        "index": index_for_key(key),
    }


@dataclass(frozen=True)
class Policy:
    kinds: tuple[SecretKind, ...]
    platform: Platform
    sources: tuple[Path, ...] = field(default=())
    notify: Notify | None = None

    def kind_for_key(self, key: str) -> SecretKind:
        for kind in self.kinds:
            if kind.matches_key(key):
                return kind
        raise AssertionError("a loaded policy always ends with a fallback kind")

    def kinds_whose_format_matches(self, value: str) -> list[SecretKind]:
        """Non-fallback kinds with a value format that ``value`` fits (for 'this looks like X')."""
        return [k for k in self.kinds if not k.fallback and k.value_pattern is not None and k.accepts_value(value)]


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Field:
    value: Any
    path: Path
    table: str


@dataclass
class _RawPolicy:
    kinds: dict[str, dict[str, _Field]] = field(default_factory=dict)
    repo_order: list[str] = field(default_factory=list)
    platform: dict[str, _Field] = field(default_factory=dict)
    notify: dict[str, _Field] = field(default_factory=dict)


_LINE_COL = re.compile(r"\(at line (\d+), column (\d+)\)")


def _display(path: Path) -> str:
    return str(path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"policy file {_display(path)}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise BadInput(f"policy file {_display(path)}: not UTF-8 text; fix or remove it") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _LINE_COL.search(message)
        line = match.group(1) if match else "?"
        reason = _LINE_COL.sub("", message).strip()
        raise BadInput(f"policy file {_display(path)}, line {line}: invalid TOML: {reason}; fix the file") from exc


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _normalise_table(name: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def _line_of(path: Path, table: str, key: str | None) -> int:
    """The line of ``key`` inside ``[table]`` (or of the table header) in a TOML file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    current = ""
    header_line = 0
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    for number, line in enumerate(lines, start=1):
        match = _HEADER.match(line)
        if match:
            current = _normalise_table(match.group(1))
            if current == table and header_line == 0:
                header_line = number
            continue
        if current == table and key_re is not None and key_re.match(line):
            return number
    return header_line or 1


def _error(path: Path, table: str, key: str | None, problem: str) -> BadInput:
    line = _line_of(path, table, key)
    where = f"{table}.{key}" if key else table
    return BadInput(f"policy file {_display(path)}, line {line}: {where}: {problem}; fix the file")


def _merge_file(raw: _RawPolicy, path: Path, data: Mapping[str, Any], *, from_repo: bool) -> None:
    kinds = data.get("kinds", {})
    if not isinstance(kinds, Mapping):
        raise _error(path, "kinds", None, "must be a table of [kinds.NAME] tables")
    for name, table in kinds.items():
        table_name = f"kinds.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise _error(path, table_name, None, "kind names may hold only letters, digits, '-' and '_'")
        if not isinstance(table, Mapping):
            raise _error(path, table_name, None, "must be a table")
        fields = raw.kinds.setdefault(name, {})
        if from_repo and name not in raw.repo_order:
            raw.repo_order.append(name)
        for key, value in table.items():
            expected = _KIND_FIELDS.get(key)
            if expected is None:
                known = ", ".join(sorted(_KIND_FIELDS))
                raise _error(path, table_name, key, f"unknown field (known: {known})")
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise _error(path, table_name, key, f"must be a {_type_name(expected)}")
            fields[key] = _Field(value, path, table_name)
    _merge_table(raw.platform, path, data, "platform", _PLATFORM_FIELDS)
    _merge_table(raw.notify, path, data, "notify", _NOTIFY_FIELDS)


def _merge_table(
    into: dict[str, _Field], path: Path, data: Mapping[str, Any], name: str, known: Mapping[str, type | tuple[type, ...]]
) -> None:
    """A flat table whose fields a later file overrides one by one (``[platform]``, ``[notify]``)."""
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise _error(path, name, None, "must be a table")
    for key, value in table.items():
        expected = known.get(key)
        if expected is None:
            raise _error(path, name, key, f"unknown field (known: {', '.join(sorted(known))})")
        if not isinstance(value, expected):
            raise _error(path, name, key, f"must be a {_type_name(expected)}")
        into[key] = _Field(value, path, name)


def _build_notify(fields: Mapping[str, _Field]) -> Notify | None:
    if not fields:
        return None
    for key in _NOTIFY_FIELDS:
        if key not in fields:
            where = next(iter(fields.values())).path
            raise _error(where, "notify", None, f"needs {key} (a [notify] table sets both room and token_key)")
    room, token_key = fields["room"], fields["token_key"]
    if not _ROOM_ID.fullmatch(room.value):
        raise _error(room.path, "notify", "room", "must be a room id such as '!abc123:clarun.xyz' (not an alias)")
    if not token_key.value.strip():
        raise _error(token_key.path, "notify", "token_key", "must name the key holding the bot's access token")
    return Notify(room=room.value, token_key=token_key.value)


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "whole number", bool: "boolean (true/false)", list: "list"}
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)


def _compile(f: _Field, key: str) -> re.Pattern[str]:
    try:
        return re.compile(f.value)
    except re.error as exc:
        raise _error(f.path, f.table, key, f"not a valid regular expression ({exc.msg})") from exc


def _string_list(f: _Field, key: str) -> tuple[str, ...]:
    if not all(isinstance(item, str) for item in f.value):
        raise _error(f.path, f.table, key, "must be a list of strings")
    return tuple(f.value)


def _build_kind(name: str, fields: Mapping[str, _Field], platform: Platform) -> SecretKind:
    def get(key: str, default: Any) -> Any:
        return fields[key].value if key in fields else default

    anywhere = next(iter(fields.values()), None)
    origin = _display(anywhere.path) if anywhere else ""
    fallback = bool(get("fallback", False))
    key_pattern = _compile(fields["key_pattern"], "key_pattern") if "key_pattern" in fields else None
    if key_pattern is None and not fallback and anywhere is not None:
        raise _error(anywhere.path, anywhere.table, None, "a kind needs key_pattern (or fallback = true)")
    value_pattern = _compile(fields["value_pattern"], "value_pattern") if "value_pattern" in fields else None
    source = get("source", "either")
    if source not in SOURCES:
        f = fields["source"]
        raise _error(f.path, f.table, "source", f"must be one of {', '.join(SOURCES)}")
    verify = get("verify", "none")
    if verify not in VERIFIERS:
        f = fields["verify"]
        raise _error(f.path, f.table, "verify", f"must be one of {', '.join(VERIFIERS)}")
    max_age = get("max_age_days", None)
    if max_age is not None and max_age < 0:
        f = fields["max_age_days"]
        raise _error(f.path, f.table, "max_age_days", "must be 0 (no maximum) or more")
    generate_bytes = get("generate_bytes", 32)
    if not 16 <= generate_bytes <= 128:
        f = fields["generate_bytes"]
        raise _error(f.path, f.table, "generate_bytes", "must be between 16 and 128")
    services = _string_list(fields["services"], "services") if "services" in fields else ()
    steps = _string_list(fields["steps"], "steps") if "steps" in fields else ()
    kind = SecretKind(
        name=name,
        description=get("description", ""),
        key_pattern=key_pattern,
        fallback=fallback,
        value_pattern=value_pattern,
        value_hint=get("value_hint", ""),
        max_age_days=max_age or None,
        source=source,
        generate_bytes=generate_bytes,
        obtain=get("obtain", ""),
        verify=verify,
        verify_after_deploy=bool(get("verify_after_deploy", False)),
        expected_team=get("expected_team", None) or None,
        host=get("host", platform.host),
        homeserver=get("homeserver", platform.homeserver),
        services=services,
        steps=steps,
        origin=origin,
    )
    if "steps" in fields:
        sample = _step_values(kind, file="f", key="k", deploy=platform.deploy)
        for step in steps:
            try:
                step.format_map(sample)
            except (KeyError, ValueError, IndexError) as exc:
                f = fields["steps"]
                raise _error(
                    f.path,
                    f.table,
                    "steps",
                    f"bad placeholder in {step!r} (known: {', '.join('{' + p + '}' for p in STEP_PLACEHOLDERS)})",
                ) from exc
    return kind


def repo_policy_files(root: Path) -> list[Path]:
    folder = root / REPO_POLICY_DIR
    if not folder.is_dir():
        return []
    try:
        if folder.resolve() == default_policy_dir().resolve():
            return []
    except OSError:
        pass
    return sorted(p for p in folder.glob("*.toml") if p.is_file())


def load_policy(root: Path | None = None, *, default_dir: Path | None = None) -> Policy:
    """The default policy, extended and overridden by ``root``'s ``policies/*.toml``."""
    default_file = (default_dir or default_policy_dir()) / DEFAULT_POLICY_FILE
    raw = _RawPolicy()
    sources: list[Path] = []
    if default_file.is_file():
        _merge_file(raw, default_file, _read_toml(default_file), from_repo=False)
        sources.append(default_file)
    default_order = list(raw.kinds)
    if root is not None:
        for path in repo_policy_files(root):
            data = _read_toml(path)
            if "kinds" in data or "platform" in data or "notify" in data:
                _merge_file(raw, path, data, from_repo=True)
                sources.append(path)
    platform = Platform(
        **{key: f.value for key, f in raw.platform.items()},
    )
    order = raw.repo_order + [name for name in default_order if name not in raw.repo_order]
    built = [_build_kind(name, raw.kinds[name], platform) for name in order]
    fallbacks = [kind for kind in built if kind.fallback]
    if len(fallbacks) != 1:
        where = sources[-1] if sources else default_file
        problem = (
            "no kind has fallback = true"
            if not fallbacks
            else "more than one kind has fallback = true: " + ", ".join(k.name for k in fallbacks)
        )
        raise BadInput(f"policy file {_display(where)}: {problem}; exactly one kind must be the fallback")
    kinds = [kind for kind in built if not kind.fallback] + fallbacks
    return Policy(kinds=tuple(kinds), platform=platform, sources=tuple(sources), notify=_build_notify(raw.notify))


"""The leak policy: rules for plaintext secrets and the allowlists, from ``leaks.toml`` files.

The default policy ships in the package (``policies/leaks.toml``); a repository may add a
``policies/leaks.toml`` of the same schema at its root. A rule with the id of a default
rule replaces it; allowlist entries, generic-rule names and coverage skips add to the
defaults; the generic rule's scalars (``min_length``, ``min_entropy``) replace them.
A malformed file is a BadInput naming the file and the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opssecrets.errors import BadInput

LEAKS_FILE = "leaks.toml"
VALIDATORS = ("matrix-crc32", "age-bech32", "pem-body", "entropy", "url-password")


@dataclass(frozen=True)
class LeakRule:
    """A pattern rule: the regex runs only on files holding one of ``keywords``."""

    id: str
    description: str
    keywords: tuple[bytes, ...]
    regex: str
    secret_group: int = 0
    validate: str | None = None
    min_entropy: float = 0.0


@dataclass(frozen=True)
class GenericRule:
    """Values assigned to secret-sounding names that look random enough."""

    id: str
    description: str
    names: tuple[str, ...]
    ignore_name_suffixes: tuple[str, ...]
    min_length: int
    min_entropy: float
    # platform keys (as_token, initialPassword...) whose every literal value is the secret
    exact_names: tuple[str, ...] = ()
    # names whose generated passwords (pwgen's, lower entropy) are found too
    password_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeakPolicy:
    rules: tuple[LeakRule, ...]
    generic: GenericRule | None
    placeholders: tuple[str, ...] = ()
    allow_paths: tuple[str, ...] = ()
    allow_fingerprints: frozenset[str] = frozenset()
    coverage_skip_suffixes: tuple[str, ...] = ()
    coverage_skip_paths: tuple[str, ...] = ()
    review_recipients: bool = False  # [review] recipients: check --base flags access gained


def default_policy_file() -> Path:
    """The shipped ``leaks.toml``: ``opssecrets/policies/`` when installed, ``policies/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "policies" / LEAKS_FILE, here.parent / "policies" / LEAKS_FILE):
        if candidate.is_file():
            return candidate
    raise BadInput(f"the default leak policy {LEAKS_FILE} is missing from the installation; reinstall opssecrets")


def repo_policy_file(root: Path) -> Path:
    return root / "policies" / LEAKS_FILE


def _line_of(text: str, needle: str) -> int | None:
    index = text.find(needle)
    return None if index < 0 else text.count("\n", 0, index) + 1


class _Reader:
    """Typed access to one parsed file, with errors that name the file and the line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, problem: str, near: str | None = None) -> BadInput:
        line = _line_of(self.text, near) if near else None
        where = f"{self.path}:{line}" if line else str(self.path)
        return BadInput(f"{where}: {problem}; fix the leak policy (see docs/guard.md)")

    def string(self, table: Mapping[str, Any], key: str, near: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"'{key}' must be a non-empty string", near)
        return value

    def strings(self, table: Mapping[str, Any], key: str, near: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.fail(f"'{key}' must be a list of non-empty strings", near)
        return tuple(value)

    def number(self, table: Mapping[str, Any], key: str, near: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(f"'{key}' must be a non-negative number", near)
        return float(value)


def _parse(path: Path, raw: bytes | None = None) -> tuple[_Reader, dict[str, Any]]:
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"{path}: cannot read the leak policy ({exc.strerror}); fix its permissions") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: the leak policy is not UTF-8 text; save it as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"{path}:{match.group(1)}" if match else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise BadInput(f"{where}: not valid TOML ({reason}); fix the leak policy (see docs/guard.md)") from exc
    return _Reader(path, text), data


def _rule(reader: _Reader, raw: Any, index: int) -> LeakRule:
    if not isinstance(raw, dict):
        raise reader.fail(f"rules entry {index + 1} is not a table", "[[rules]]")
    rule_id = raw.get("id")
    near = f'"{rule_id}"' if isinstance(rule_id, str) else "[[rules]]"
    rule_id = reader.string(raw, "id", near)
    regex = reader.string(raw, "regex", near)
    try:
        compiled = re.compile(regex.encode("utf-8"))
    except re.error as exc:
        raise reader.fail(f"rule {rule_id}: regex does not compile ({exc})", near) from exc
    group = raw.get("secret_group", 0)
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= compiled.groups:
        raise reader.fail(f"rule {rule_id}: secret_group must be a group number of its regex (0..{compiled.groups})", near)
    validate = raw.get("validate")
    if validate is not None and validate not in VALIDATORS:
        raise reader.fail(f"rule {rule_id}: validate must be one of {', '.join(VALIDATORS)}", near)
    keywords = reader.strings(raw, "keywords", near)
    if not keywords:
        raise reader.fail(f"rule {rule_id}: give at least one literal in 'keywords' (the regex runs only where one occurs)", near)
    unknown = set(raw) - {"id", "description", "keywords", "regex", "secret_group", "validate", "min_entropy"}
    if unknown:
        raise reader.fail(f"rule {rule_id}: unknown key(s) {', '.join(sorted(unknown))}", near)
    return LeakRule(
        id=rule_id,
        description=reader.string(raw, "description", near, default=rule_id),
        keywords=tuple(k.encode("utf-8") for k in keywords),
        regex=regex,
        secret_group=group,
        validate=validate,
        min_entropy=reader.number(raw, "min_entropy", near, 0.0),
    )


def _table(reader: _Reader, data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise reader.fail(f"'{key}' must be a table ([{key}])", key)
    return value


def _merge(policy: LeakPolicy | None, path: Path, raw: bytes | None = None) -> LeakPolicy:
    reader, data = _parse(path, raw)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise reader.fail("'rules' must be an array of tables ([[rules]])", "rules")
    rules = [_rule(reader, raw, i) for i, raw in enumerate(raw_rules)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise reader.fail(f"rule id {rule.id} appears twice", f'"{rule.id}"')
        seen.add(rule.id)

    review = _table(reader, data, "review")
    if set(review) - {"recipients"}:
        raise reader.fail(f"[review]: unknown key(s) {', '.join(sorted(set(review) - {'recipients'}))}", "[review]")
    if "recipients" in review and not isinstance(review["recipients"], bool):
        raise reader.fail("[review] recipients must be true or false", "[review]")
    base_review = policy.review_recipients if policy is not None else False
    review_recipients = bool(review.get("recipients", base_review))

    generic_raw = _table(reader, data, "generic")
    allow = _table(reader, data, "allowlist")
    coverage = _table(reader, data, "coverage")
    fingerprints = reader.strings(allow, "fingerprints", "fingerprints")
    for fingerprint in fingerprints:
        if not re.fullmatch(r"(?:hmac-sha256|sha256):[0-9a-f]{16}", fingerprint):
            raise reader.fail(
                f"fingerprint {fingerprint!r} must look like hmac-sha256:<16 hex> as printed with a finding", fingerprint
            )

    base_generic = policy.generic if policy is not None else None
    generic = base_generic
    if generic_raw:
        names = reader.strings(generic_raw, "names", "[generic]")
        suffixes = reader.strings(generic_raw, "ignore_name_suffixes", "[generic]")
        if base_generic is None:
            generic = GenericRule(
                id=reader.string(generic_raw, "id", "[generic]", default="generic-secret"),
                description=reader.string(generic_raw, "description", "[generic]", default="secret-sounding assignment"),
                names=tuple(n.lower() for n in names),
                ignore_name_suffixes=tuple(s.lower() for s in suffixes),
                min_length=int(reader.number(generic_raw, "min_length", "[generic]", 12)),
                min_entropy=reader.number(generic_raw, "min_entropy", "[generic]", 3.5),
                exact_names=tuple(n.lower() for n in reader.strings(generic_raw, "exact_names", "[generic]")),
                password_names=tuple(n.lower() for n in reader.strings(generic_raw, "password_names", "[generic]")),
            )
        else:
            generic = replace(
                base_generic,
                names=base_generic.names + tuple(n.lower() for n in names if n.lower() not in base_generic.names),
                ignore_name_suffixes=base_generic.ignore_name_suffixes + tuple(s.lower() for s in suffixes),
                min_length=int(reader.number(generic_raw, "min_length", "[generic]", base_generic.min_length)),
                min_entropy=reader.number(generic_raw, "min_entropy", "[generic]", base_generic.min_entropy),
                exact_names=base_generic.exact_names + tuple(n.lower() for n in reader.strings(generic_raw, "exact_names", "[generic]")),
                password_names=base_generic.password_names
                + tuple(n.lower() for n in reader.strings(generic_raw, "password_names", "[generic]")),
            )
        if generic is not None and not generic.names:
            raise reader.fail("[generic] needs at least one name", "[generic]")

    if policy is None:
        return LeakPolicy(
            rules=tuple(rules),
            generic=generic,
            placeholders=tuple(p.lower() for p in reader.strings(allow, "placeholders", "placeholders")),
            allow_paths=reader.strings(allow, "paths", "paths"),
            allow_fingerprints=frozenset(fingerprints),
            coverage_skip_suffixes=reader.strings(coverage, "skip_suffixes", "skip_suffixes"),
            coverage_skip_paths=reader.strings(coverage, "skip_paths", "skip_paths"),
            review_recipients=review_recipients,
        )
    replaced = {rule.id: rule for rule in rules}
    merged_rules = tuple(replaced.pop(rule.id, rule) for rule in policy.rules) + tuple(replaced.values())
    return LeakPolicy(
        rules=merged_rules,
        generic=generic,
        placeholders=policy.placeholders + tuple(p.lower() for p in reader.strings(allow, "placeholders", "placeholders")),
        allow_paths=policy.allow_paths + reader.strings(allow, "paths", "paths"),
        allow_fingerprints=policy.allow_fingerprints | frozenset(fingerprints),
        coverage_skip_suffixes=policy.coverage_skip_suffixes + reader.strings(coverage, "skip_suffixes", "skip_suffixes"),
        coverage_skip_paths=policy.coverage_skip_paths + reader.strings(coverage, "skip_paths", "skip_paths"),
        review_recipients=review_recipients,
    )


def load_leak_policy(repo_root: Path | None = None, default_file: Path | None = None) -> LeakPolicy:
    """The shipped policy, plus the repository's ``policies/leaks.toml`` when it has one."""
    default = default_file or default_policy_file()
    policy = _merge(None, default)
    if repo_root is not None:
        own = repo_policy_file(repo_root)
        if own.is_file() and own.resolve() != default.resolve():
            policy = _merge(policy, own)
    return policy


def load_leak_policy_at(repo_root: Path, ref: str, default_file: Path | None = None) -> LeakPolicy:
    """The shipped policy plus the repository's ``policies/leaks.toml`` as committed at ``ref``.

    ``check --base REF`` reviews a branch with this: the branch's own policy files are what
    is under review, so they never decide what the review finds.
    """
    from opssecrets import git

    default = default_file or default_policy_file()
    policy = _merge(None, default)
    own = repo_policy_file(repo_root)
    if own.resolve() == default.resolve():
        return policy  # the opssecrets checkout itself: its policies/ is the shipped folder
    committed = git.show_file(repo_root, ref, f"policies/{LEAKS_FILE}")
    if committed is not None:
        policy = _merge(policy, Path(f"{ref}:policies/{LEAKS_FILE}"), committed)
    return policy

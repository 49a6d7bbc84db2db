"""The leak scanner: plaintext secrets in a file's bytes.

Speed comes from never running a regex where it cannot match: one pass of one trie-shaped
regex over the lower-cased bytes finds every rule keyword and secret-sounding name; a
pattern rule runs only on a file holding one of its keywords, and the generic rule only
tries an anchored, bounded match right after each name. Every quantifier is bounded, so a 100,000-character line or a 50 MB
file costs time linear in its size.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opssecrets.guard import decoding, validators
from opssecrets.guard.findings import Finding, allowlisted, fingerprint_note, redact
from opssecrets.policy_leaks import GenericRule, LeakPolicy, LeakRule

ALLOW_MARKER = b"opssecrets: allow"
BINARY_SNIFF = 8192
_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_NAME_REACH = 64
DENSE_NAME_HITS = 20_000  # above this many names in one file, filter assignments in one regex pass

# After a secret-sounding word (in the lower-cased bytes): the rest of the name, an optional
# closing quote, an assignment operator, then a value quoted (with an optional b/r/f prefix)
# or bare, at least min_length long. `==`, `!=`, `<=`, `::` are not assignments.
_TAIL = (
    rb"""([a-z0-9_.\-]{0,64})["']?[ \t]*(?::=|=>|:(?![:=])|=(?![=~]))[ \t]*"""
    rb"""(?:[bruf]{0,2}(["'`])([^"'`\\\r\n]{%d,512}?)\2|([^\s"'`#;,(){}\[\]<>\\]{%d,512}))"""
)
_PATHISH = re.compile(r"[a-z0-9_.~-]+(?:/[a-z0-9_.~-]*)+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_WORDISH = re.compile(r"[a-z]+(?:[_.-][a-z]+)*|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*|[A-Za-z_]+(?:\.[A-Za-z_]+)+|[0-9]+")
# A dotted name (``x25519.X25519PrivateKey``, ``hashes.SHA256``): each part an identifier.
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}(?:\.[A-Za-z_][A-Za-z0-9_]{0,40})+")
# Camel-case words, acronyms and digit runs: ``Ed25519PrivateKey``, ``ExclusiveStartKey``.
_CAMEL_PART = re.compile(r"[A-Z]{2,}(?=[A-Z][a-z]|[0-9]|$)|[A-Z]?[a-z]+|[A-Z]|[0-9]+")
_VOWELS = frozenset("aeiouyAEIOUY")
# Paths under these roots are references even when a part looks random (/run/secrets/aB3x...).
_PATH_ROOTS = (
    "/run/",
    "/var/",
    "/etc/",
    "/nix/",
    "/home/",
    "/usr/",
    "/opt/",
    "/srv/",
    "/dev/",
    "/proc/",
    "/sys/",
    "/mnt/",
    "/root/",
    "/data/",
    "/secrets/",
    "/persist/",
    "/bin/",
    "/lib/",
)
# Source files whose unquoted right-hand side is always an expression (a name, a call, a type),
# never a literal: a secret in them is quoted. Shell, env and YAML files are not among them.
CODE_SUFFIXES = (
    ".py",
    ".pyi",
    ".nix",
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".jsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".scala",
    ".rb",
    ".php",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".swift",
    ".lua",
    ".pl",
    ".ex",
    ".exs",
    ".hs",
    ".ml",
    ".dart",
    ".groovy",
)
_REFERENCE_PREFIXES = (
    "ENC[",
    "$",
    "%",
    "{{",
    "<",
    "./",
    "../",
    "~/",
    "config.",
    "cfg.",
    "self.",
    "http://",
    "https://",
    "file:",
    "age1",
    "sha256-",
    "sha512-",
    "sha1-",
    "ssh-",
    "ecdsa-",
    "env:",
    "vault:",
    "op://",
    "!",
    "arn:",
)


EXACT_MIN_LENGTH = 8
SHORT_NAME = 4  # names this short (pass, pwd) turn up inside random values by chance
PASSWORD_MIN_ENTROPY = 2.3


def _last_part(name: bytes) -> str:
    """The last segment of a dotted name, without quotes: ``users.users.x.initialpassword`` -> ``initialpassword``."""
    return name.decode("utf-8", "replace").rsplit(".", 1)[-1].strip("\"'")


def _in_arn(data: bytes, start: int) -> bool:
    """Whether the name at ``start`` is a part of an ``arn:...`` word."""
    floor = max(0, start - 256)
    index = start
    while index > floor and data[index - 1 : index] not in (b" ", b"\t", b"\n", b'"', b"'", b"=", b"`"):
        index -= 1
    return data.startswith(b"arn:", index)


def _is_path(value: str) -> bool:
    """An absolute path: under a system root, or every part lower-case words. ``/aB3x+9Qz...`` is a value."""
    if not value.startswith("/"):
        return False
    if value.startswith(_PATH_ROOTS):
        return True
    return _PATHISH.fullmatch(value.lstrip("/")) is not None or _WORDISH.fullmatch(value.strip("/")) is not None


def _is_identifier(value: str, quoted: bool) -> bool:
    """A type, class or field name (``Ed25519PrivateKey``, ``"ExclusiveStartKey"``, ``x25519.X25519PrivateKey``).

    Its parts are camel-case words (each with a vowel) or acronyms, and a digit run is never
    followed by a lower-case letter; a generated password (``eeQu1Ieb2eixo0Oo``,
    ``Xk9Lm2Qp7Rt4``) fails one of these. A quoted value may not hold digits at all.
    """
    if _DOTTED.fullmatch(value):
        return all(_is_identifier(part, quoted) or part.islower() for part in value.split("."))
    if quoted and any(ch.isdigit() for ch in value):
        return False
    if not value.isalnum() or not value[0].isalpha() or value.lower() == value or value.upper() == value:
        return False
    parts = _CAMEL_PART.findall(value)
    if "".join(parts) != value or (len(parts) > 2 and parts[-1].isdigit() and parts[-2].islower()):
        return False  # pwgen's "Nowmoupexzu0" ends in a digit after a lower-case syllable
    letters = good = 0
    previous_digit = False
    for part in parts:
        if part.isdigit():
            previous_digit = True
            continue
        if previous_digit and part[0].islower():
            return False
        previous_digit = False
        letters += len(part)
        if part.isupper() or (len(part) >= 3 and any(ch in _VOWELS for ch in part)):
            good += len(part)
    return letters > 0 and good >= 0.75 * letters


def is_binary(data: bytes) -> bool:
    """A NUL in the first 8 KiB, and not UTF-16 text (which is decoded and scanned)."""
    return b"\0" in data[:BINARY_SNIFF] and not decoding.is_utf16(data)


def literal_trie(words: list[bytes]) -> bytes:
    """One regex alternation shaped as a trie: sre walks shared prefixes once."""
    trie: dict[int | None, Any] = {}
    for word in words:
        node = trie
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}

    def build(node: dict[int | None, Any]) -> bytes:
        branches = [re.escape(bytes([key])) + build(child) for key, child in sorted((k, v) for k, v in node.items() if k is not None)]
        if not branches:
            return b""
        ends_here = None in node
        if len(branches) == 1 and not ends_here:
            return branches[0]
        group = b"(?:" + b"|".join(branches) + b")"
        return group + b"?" if ends_here else group

    return build(trie)


@dataclass(frozen=True)
class _Hit:
    start: int
    rule: str
    message: str
    secret: bytes


class _CompiledRule:
    __slots__ = ("pattern", "rule")

    def __init__(self, rule: LeakRule) -> None:
        self.rule = rule
        self.pattern = re.compile(rule.regex.encode("utf-8"))


class LeakScanner:
    """Compiled once from a :class:`LeakPolicy`; :meth:`scan` is safe to call per file.

    One pass of one regex (every rule keyword and every secret-sounding name, lower-cased,
    as a trie) over the lower-cased bytes tells which rules can match and where the names
    are; only those rules' own regexes then run, on the original bytes.
    """

    def __init__(self, policy: LeakPolicy, fingerprint_key: bytes | None = None) -> None:
        self.policy = policy
        self._fingerprint_key = fingerprint_key  # None: findings carry no fingerprint
        self._rules = [_CompiledRule(rule) for rule in policy.rules]
        self._generic: GenericRule | None = policy.generic
        self._placeholders = policy.placeholders
        self._rules_for: dict[bytes, list[_CompiledRule]] = {}
        for compiled in self._rules:
            for keyword in compiled.rule.keywords:
                self._rules_for.setdefault(keyword.lower(), []).append(compiled)
        self._names: frozenset[bytes] = frozenset(n.encode("utf-8") for n in self._generic.names) if self._generic else frozenset()
        literals = sorted(set(self._rules_for) | self._names)
        self._gate = re.compile(literal_trie(literals)) if literals else None
        # platform keys (exact_names) take shorter values: capture from the shorter length
        length = max(1, min(self._generic.min_length, EXACT_MIN_LENGTH)) if self._generic else 1
        self._tail = re.compile(_TAIL % (length, length))
        names_alternation = literal_trie(sorted(self._names)) if self._names else b"(?!)"
        self._dense = re.compile(b"(?:" + names_alternation + b")" + _TAIL % (length, length))

    def path_allowed(self, rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.policy.allow_paths)

    def scan(self, rel: str, data: bytes) -> list[Finding]:
        """Findings for one file's content (empty for an allowlisted path or a binary file).

        UTF-16 text is scanned as UTF-8; YAML, JSON, TOML, HCL and Nix files are also
        scanned in their decoded values (escapes, block scalars, a Kubernetes Secret's
        base64 ``data``), reported on the line of the value's key.
        """
        if not data or self._gate is None or self.path_allowed(rel):
            return []
        wide = decoding.utf16_text(data)
        if wide is not None:
            data = wide
        elif is_binary(data):
            return []
        code = rel.lower().endswith(CODE_SUFFIXES)
        hits = self._hits(data, code)
        findings = self._to_findings(rel, data, hits) if hits else []
        exact = self._generic.exact_names if self._generic is not None else ()
        segments = decoding.decoded_values(rel, data, exact)
        if segments:
            findings.extend(self._decoded_findings(rel, data, segments, {(f.line, f.rule) for f in findings}))
        return findings

    def _hits(self, data: bytes, code: bool) -> list[_Hit]:
        lowered = data.lower()
        assert self._gate is not None
        found = self._gate.findall(lowered)
        if not found:
            return []
        hits: list[_Hit] = []
        present = set(found)
        to_run: dict[int, _CompiledRule] = {}
        for literal in present:
            for compiled in self._rules_for.get(literal, ()):
                to_run[id(compiled)] = compiled
        taken: set[int] = set()
        for compiled in sorted(to_run.values(), key=self._rules.index):
            # a token a rule named (https://ci:ghp_...@host) is one finding, not a second url-credentials one
            fresh = [hit for hit in self._pattern_hits(compiled, data) if hit.start not in taken]
            taken.update(hit.start for hit in fresh)
            hits.extend(fresh)
        if self._generic is not None and not present.isdisjoint(self._names):
            name_hits = len(found) if len(found) <= DENSE_NAME_HITS else sum(1 for word in found if word in self._names)
            spans = [(hit.start, hit.start + len(hit.secret)) for hit in hits]
            generic = self._generic_hits(self._generic, data, lowered, name_hits, code, sorted(present & self._names))
            # a value a specific rule already named (SLACK_APP_TOKEN=xapp-...) is one finding, not two
            hits.extend(hit for hit in generic if not any(start <= hit.start < end for start, end in spans))
        return hits

    def _decoded_findings(self, rel: str, raw: bytes, segments: list[decoding.Segment], seen: set[tuple[int | None, str]]) -> list[Finding]:
        """Findings in decoded values, each on its key's line; one already found there raw is not repeated."""
        text = b"".join(segment.text + b"\n" for segment in segments)
        hits = self._hits(text, code=False)
        if not hits:
            return []
        starts: list[int] = []
        offset = 0
        for segment in segments:
            starts.append(offset)
            offset += len(segment.text) + 1
        raw_lines = raw.split(b"\n")
        out: list[Finding] = []
        for hit in sorted(hits, key=lambda h: h.start):
            segment = segments[bisect.bisect_right(starts, hit.start) - 1]
            line = segment.line
            if any((n, hit.rule) in seen for n in range(segment.first, segment.last + 1)) or (line, hit.rule) in seen:
                continue
            if any(ALLOW_MARKER in raw_lines[n - 1] for n in {line, *range(segment.first, segment.last + 1)} if n <= len(raw_lines)):
                continue
            seen.add((line, hit.rule))
            if allowlisted(hit.secret, self.policy.allow_fingerprints, self._fingerprint_key):
                continue
            note = fingerprint_note(hit.secret, self._fingerprint_key)
            out.append(Finding(rel, line, hit.rule, f"{hit.message} (in the decoded value){note}"))
        return out

    # -- pattern rules -------------------------------------------------------------------

    def _is_placeholder(self, secret: bytes) -> bool:
        lowered = secret.decode("utf-8", "replace").lower()
        return any(word in lowered for word in self._placeholders)

    def _pattern_hits(self, compiled: _CompiledRule, data: bytes) -> list[_Hit]:
        rule = compiled.rule
        out: list[_Hit] = []
        for match in compiled.pattern.finditer(data):
            secret = match.group(rule.secret_group) or match.group(0)
            whole = match.group(0)
            if rule.validate == "matrix-crc32" and not validators.matrix_checksum_ok(whole):
                continue
            if rule.validate == "age-bech32" and not validators.age_identity_ok(whole):
                continue
            if rule.validate == "pem-body":
                if not validators.pem_body_ok(data, match.end()):
                    continue
                message = f"{rule.description} ({whole.strip(b'-').decode('ascii', 'replace')}); remove it and replace the key"
                out.append(_Hit(match.start(), rule.id, message, whole + data[match.end() : match.end() + 256]))
                continue
            if rule.validate == "entropy" and validators.shannon_entropy(secret) < rule.min_entropy:
                continue
            if rule.validate == "url-password":
                if not validators.url_password_ok(secret) or self._is_placeholder(secret):
                    continue
                # the finding starts at the password and shows only it: the user name is no secret
                out.append(
                    _Hit(
                        match.start(rule.secret_group),
                        rule.id,
                        f"{rule.description} {redact(secret)!s}; remove it, revoke it, and store it with sops",
                        secret,
                    )
                )
                continue
            if self._is_placeholder(whole):
                continue
            message = f"{rule.description} {redact(whole)!s}; remove it, revoke it, and store it with sops"
            out.append(_Hit(match.start(), rule.id, message, whole))
        return out

    # -- the generic rule ----------------------------------------------------------------

    def _assignments(self, lowered: bytes, name_hits: int, present: list[bytes]) -> Iterator[tuple[int, re.Match[bytes]]]:
        """(name word start, match of the tail: name rest, operator, value) for each candidate.

        Sparse files: an anchored match right after each name the gate found. Dense files
        (a log with a name on every line): one C-level pass of name+tail, so Python never
        loops over the hundreds of thousands of names that have no long value after them.
        """
        if name_hits > DENSE_NAME_HITS:
            for match in self._dense.finditer(lowered):
                yield match.start(), match
            return
        # bytes.find per name the gate saw (memchr speed) instead of a second pass of the gate;
        # a name inside a longer one ("pass" in "password") ends at the same assignment, which
        # the caller counts once
        tail = self._tail
        for name in present:
            index = lowered.find(name)
            while index >= 0:
                assignment = tail.match(lowered, index + len(name))
                if assignment is not None:
                    yield index, assignment
                index = lowered.find(name, index + 1)

    def _generic_hits(
        self, generic: GenericRule, data: bytes, lowered: bytes, name_hits: int, code: bool, present: list[bytes]
    ) -> list[_Hit]:
        out: list[_Hit] = []
        seen_ends: set[int] = set()
        for start, assignment in self._assignments(lowered, name_hits, present):
            end = assignment.end(1)
            if end in seen_ends:
                continue
            seen_ends.add(end)
            floor = max(0, start - _NAME_REACH)
            while start > floor and data[start - 1] in _NAME_CHARS:
                start -= 1
            name = lowered[start:end].rstrip(b".-")
            if self._name_ignored(generic, name):
                continue
            value_group = 3 if assignment.group(3) is not None else 4
            value = data[assignment.start(value_group) : assignment.end(value_group)]
            if value_group == 4 and (code or data[assignment.end(4) : assignment.end(4) + 1] in (b"(", b"[")):
                continue  # an expression: a name, a type annotation, a call, a subscript
            if _in_arn(data, start):
                continue  # arn:aws:secretsmanager:...:secret:prod/x is an address, not a value
            if not self._value_is_secret(generic, value, _last_part(name), quoted=value_group == 3):
                continue
            shown = name.decode("utf-8", "replace")
            message = f"{generic.description}: {shown} = {redact(value)}; move the value into a sops file"
            out.append(_Hit(assignment.start(value_group), generic.id, message, value))
        return out

    @staticmethod
    def _name_ignored(generic: GenericRule, name: bytes) -> bool:
        text = name.decode("utf-8", "replace")
        return any(text.endswith(suffix) for suffix in generic.ignore_name_suffixes)

    def _value_is_secret(self, generic: GenericRule, raw: bytes, name: str, quoted: bool) -> bool:
        value = raw.decode("utf-8", "replace")
        if name in generic.exact_names and not any(word in value.lower() for word in generic.names):
            # a platform secret (as_token, registration_shared_secret, initialPassword...):
            # any literal is the secret itself, unless it is a reference, a hash or a placeholder
            return (
                len(value) >= min(generic.min_length, EXACT_MIN_LENGTH)
                and not any(ch.isspace() for ch in value)
                and not value.startswith(_REFERENCE_PREFIXES)
                and not _is_path(value)
                and "${" not in value
                and "{{" not in value
                and not self._is_placeholder(raw)
            )
        if len(raw) < generic.min_length:
            return False
        if any(ch.isspace() for ch in value) or value.startswith(_REFERENCE_PREFIXES) or _is_path(value):
            return False
        if "ENC[" in value or "/nix/store/" in value or "{" in value or "}" in value:
            return False  # ciphertext, store paths, ${VAR} / {{ var }} / f"{x}" templates
        lowered = value.lower()
        if any(name in lowered for name in generic.names if len(name) > SHORT_NAME):
            return False  # "old-password-1", "my_api_token_here": a name, not a secret ("pwd" in a random one is chance)
        if _PATHISH.fullmatch(value):
            return False
        password = any(word in name for word in generic.password_names)
        generated = password and any(c.isalpha() for c in value) and any(c.isdigit() for c in value)
        if _UUID.fullmatch(value) or _WORDISH.fullmatch(value) or (not generated and _is_identifier(value, quoted)):
            return False
        classes = sum((any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value)))
        if classes < 2:
            return False
        if self._is_placeholder(raw):
            return False
        if generated:
            # a generated password (pwgen's "eeQu1Ieb2eixo0Oo"): pronounceable, so lower entropy
            return validators.shannon_entropy(value) >= min(PASSWORD_MIN_ENTROPY, 0.7 * math.log2(len(value)))
        wanted = min(generic.min_entropy, 0.85 * math.log2(len(value)))
        return validators.shannon_entropy(value) >= wanted

    # -- lines, allow comments, allowlisted fingerprints -----------------------------------

    def _to_findings(self, rel: str, data: bytes, hits: list[_Hit]) -> list[Finding]:
        hits.sort(key=lambda hit: hit.start)
        allowed = self.policy.allow_fingerprints
        findings: list[Finding] = []
        line = 1
        counted_to = 0
        line_start = line_end = -1
        line_allowed = False
        for hit in hits:
            line += data.count(b"\n", counted_to, hit.start)
            counted_to = hit.start
            if not line_start <= hit.start < line_end:
                line_start = data.rfind(b"\n", 0, hit.start) + 1
                found = data.find(b"\n", hit.start)
                line_end = len(data) if found < 0 else found
                line_allowed = ALLOW_MARKER in data[line_start:line_end]
            if line_allowed:
                continue
            if allowlisted(hit.secret, allowed, self._fingerprint_key):
                continue
            findings.append(Finding(rel, line, hit.rule, hit.message + fingerprint_note(hit.secret, self._fingerprint_key)))
        return findings

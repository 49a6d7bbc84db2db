"""Files a ``.sops.yaml`` rule covers: are they sops files, fully encrypted, for the right recipients?

``sops filestatus`` calls a file encrypted when its metadata exists. Here every value is
checked against the file's own encryption policy (the suffix/regex keys sops copies into
the metadata), the way sops decides what to encrypt, and the file's recipients against
those of the rule that covers it now.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opssecrets.errors import BadInput
from opssecrets.guard.findings import Finding
from opssecrets.paths import CONFIG_NAME
from opssecrets.rules import CreationRule, matching_rule, rules_from_data
from opssecrets.secretfile import (
    NotASopsFile,
    SopsMetadata,
    drift,
    file_format,
    flat_entries,
    metadata_from,
    other_format,
    parse_tree,
)

DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"

RULE_CONFIG = "sops-config-invalid"
RULE_UNENCRYPTED = "sops-unencrypted"
RULE_PLAINTEXT_VALUE = "sops-plaintext-value"
RULE_MISSING_MAC = "sops-missing-mac"
RULE_DRIFT = "sops-recipient-drift"


@dataclass(frozen=True)
class SopsConfigView:
    """The creation rules as the guard sees them, or the finding that says why it cannot."""

    rules: tuple[CreationRule, ...]
    problem: Finding | None = None


def load_config(data: bytes | None) -> SopsConfigView:
    """Parse ``.sops.yaml`` content; a file that does not parse is one finding, not an error."""
    if data is None:
        return SopsConfigView(())
    import yaml

    from opssecrets.yamllimits import TooDeep, safe_load

    try:
        parsed = safe_load(data.decode("utf-8"))
    except TooDeep as exc:
        line = int(exc.where.split()[1].rstrip(":")) if exc.where else None
        return SopsConfigView(
            (), Finding(CONFIG_NAME, line, RULE_CONFIG, "is nested too deep to be a .sops.yaml; sops cannot use it: fix the file")
        )
    except UnicodeDecodeError:
        return SopsConfigView((), Finding(CONFIG_NAME, None, RULE_CONFIG, "is not UTF-8 text; sops cannot read it; save it as UTF-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        message = f"does not parse as YAML ({problem}); sops cannot use it and no file was checked against its rules: fix the syntax"
        return SopsConfigView((), Finding(CONFIG_NAME, line, RULE_CONFIG, message))
    try:
        rules = rules_from_data(parsed, CONFIG_NAME)
        for rule in rules:
            rule.compiled()
    except BadInput as exc:
        return SopsConfigView((), Finding(CONFIG_NAME, None, RULE_CONFIG, exc.message))
    except re.error as exc:
        return SopsConfigView((), Finding(CONFIG_NAME, None, RULE_CONFIG, f"a path_regex does not compile ({exc}); fix the regex"))
    return SopsConfigView(tuple(rules))


def covering_rule(view: SopsConfigView, rel: str, skip_suffixes: Sequence[str], skip_paths: Sequence[str]) -> CreationRule | None:
    """The rule sops would apply to ``rel`` (relative to the repository root, where .sops.yaml is)."""
    if not view.rules or rel == CONFIG_NAME:
        return None
    if any(rel.endswith(suffix) for suffix in skip_suffixes):
        return None
    if any(fnmatch.fnmatchcase(rel, pattern) for pattern in skip_paths):
        return None
    return matching_rule(view.rules, rel)


# -- which values sops encrypts ----------------------------------------------------------


def must_encrypt(path: Sequence[str], policy: Mapping[str, Any]) -> bool:
    """Whether sops encrypts a value at ``path`` (its keys) under a file's policy (sops.go Encrypt)."""
    unencrypted_suffix = policy.get("unencrypted_suffix")
    encrypted_suffix = policy.get("encrypted_suffix")
    unencrypted_regex = policy.get("unencrypted_regex")
    encrypted_regex = policy.get("encrypted_regex")
    if not any((unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex)):
        unencrypted_suffix = DEFAULT_UNENCRYPTED_SUFFIX
    encrypted = True
    if unencrypted_suffix and any(key.endswith(str(unencrypted_suffix)) for key in path):
        encrypted = False
    if encrypted_suffix:
        encrypted = any(key.endswith(str(encrypted_suffix)) for key in path)
    if unencrypted_regex and any(_search(str(unencrypted_regex), key) for key in path):
        encrypted = False
    if encrypted_regex:
        encrypted = any(_search(str(encrypted_regex), key) for key in path)
    return encrypted


def _search(regex: str, text: str) -> bool:
    try:
        return re.search(regex, text) is not None
    except re.error:
        return True  # a regex Python cannot compile: count it as matching, never a false alarm


def is_encrypted_value(value: str) -> bool:
    return value.startswith("ENC[AES256_GCM,") and value.endswith("]")


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]
    value: str | None  # None: null / not a scalar sops would encrypt
    line: int | None


MAX_LEAVES = 50_000  # sops writes no aliases; past this, aliases are expanding a bomb


class TooManyLeaves(Exception):
    """A YAML file whose aliases expand past MAX_LEAVES values: not something sops wrote."""


def _yaml_leaves(text: str) -> Iterator[_Leaf]:
    import yaml

    from opssecrets.yamllimits import compose_all

    roots = compose_all(text)  # TooDeep before libyaml could crash on it
    budget = [MAX_LEAVES]

    def walk(node: yaml.Node, path: tuple[str, ...]) -> Iterator[_Leaf]:
        budget[0] -= 1
        if budget[0] < 0:
            raise TooManyLeaves
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                if not path and name == "sops":
                    continue
                yield from walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield from walk(item, path)
        elif isinstance(node, yaml.ScalarNode):
            is_null = node.tag == "tag:yaml.org,2002:null"
            yield _Leaf(path, None if is_null else str(node.value), node.start_mark.line + 1)

    for root in roots:  # sops writes one sops block per document
        if isinstance(root, yaml.MappingNode):
            yield from walk(root, ())


def _yaml_metadata(text: str) -> SopsMetadata:
    """The metadata of a (possibly multi-document) YAML sops file: every document needs its own."""
    from opssecrets.yamllimits import safe_load_all

    documents = [doc for doc in safe_load_all(text) if doc is not None]  # TooDeep before libyaml could crash
    if not documents:
        raise NotASopsFile("empty")
    metadata = [metadata_from(doc.get("sops") if isinstance(doc, dict) else None) for doc in documents]
    return metadata[0]


def _flat_leaves(text: str, fmt: str) -> Iterator[_Leaf]:
    """dotenv and INI entries (secretfile's one reader) without sops' own ``sops_*`` / ``[sops]``."""
    for entry in flat_entries(text, fmt):
        if fmt == "dotenv":
            if not entry.key.startswith("sops_"):
                yield _Leaf((entry.key,), entry.value.rstrip(), entry.line)
        elif entry.section != "sops":
            yield _Leaf((entry.section, entry.key) if entry.section else (entry.key,), entry.value, entry.line)


def _leaves(text: str, fmt: str) -> Iterator[_Leaf]:
    if fmt in ("dotenv", "ini"):
        return _flat_leaves(text, fmt)
    return _yaml_leaves(text)


def _metadata(rel: str, text: str, fmt: str) -> SopsMetadata:
    if fmt == "yaml":
        return _yaml_metadata(text)
    _, raw_meta = parse_tree(Path(rel), text, fmt)
    return metadata_from(raw_meta)


def check_covered_file(rel: str, data: bytes, rule: CreationRule) -> list[Finding]:
    """Findings for one file a rule covers: not a sops file, plaintext values, no mac, drift."""
    where = rule.label
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [
            Finding(
                rel,
                None,
                RULE_UNENCRYPTED,
                f"covered by .sops.yaml {where} but is not a sops file (binary or not UTF-8); encrypt it: sops encrypt -i {rel}",
            )
        ]
    fmt = file_format(rel)
    try:
        try:
            metadata = _metadata(rel, text, fmt)
        except Exception:
            other = other_format(rel, text)  # by content: encrypted with --input-type, or renamed
            if other is None:
                raise
            fmt = other
            metadata = _metadata(rel, text, fmt)
    except NotASopsFile:
        return [
            Finding(
                rel,
                None,
                RULE_UNENCRYPTED,
                f"covered by .sops.yaml {where} but has no sops metadata (plaintext?); encrypt it: sops encrypt -i {rel}",
            )
        ]
    except Exception as exc:  # any parser's error: not something sops wrote
        return [
            Finding(
                rel,
                None,
                RULE_UNENCRYPTED,
                f"covered by .sops.yaml {where} but does not parse as {fmt} "
                f"({exc.__class__.__name__}); restore it from git or re-encrypt it",
            )
        ]
    findings: list[Finding] = []
    if not metadata.mac or not is_encrypted_value(metadata.mac):
        findings.append(
            Finding(
                rel,
                None,
                RULE_MISSING_MAC,
                "sops metadata has no encrypted mac: the file was edited by hand or damaged; restore it from git or re-encrypt it",
            )
        )
    findings.extend(_plaintext_values(rel, text, fmt, metadata))
    drift = recipient_drift(rel, metadata, rule)
    if drift is not None:
        findings.append(drift)
    return findings


def _plaintext_values(rel: str, text: str, fmt: str, metadata: SopsMetadata) -> list[Finding]:
    findings: list[Finding] = []
    try:
        leaves = list(_leaves(text, fmt))
    except TooManyLeaves:
        return [
            Finding(
                rel,
                None,
                RULE_UNENCRYPTED,
                f"YAML aliases in it expand past {MAX_LEAVES} values: sops never writes aliases; "
                "restore it from git or re-encrypt it",
            )
        ]
    except Exception:  # the metadata parsed, so this is a YAML corner PyYAML's composer dislikes
        return findings
    for leaf in leaves:
        if leaf.value is None or leaf.value == "" or is_encrypted_value(leaf.value):
            continue
        if not must_encrypt(leaf.path, metadata.policy):
            continue
        name = "/".join(part for part in leaf.path if part) or "(top level)"
        findings.append(
            Finding(
                rel,
                leaf.line,
                RULE_PLAINTEXT_VALUE,
                f"value of {name} is plaintext in a sops file (its policy says encrypt it); "
                f"re-encrypt with 'sops set' or 'sops edit', never paste values into the file",
            )
        )
    return findings


def _short(recipient: str) -> str:
    return recipient[:12] + "…" if len(recipient) > 12 else recipient


def recipient_drift(rel: str, metadata: SopsMetadata, rule: CreationRule) -> Finding | None:
    """A finding when a file's age recipients differ from those its rule lists now (``drift``:
    key group by key group, as ``access`` and ``reencrypt`` compare)."""
    if not rule.has_recipients:
        return None
    found = drift(rule, metadata)
    if found is None:
        return None
    parts = []
    if found.missing:
        parts.append("not readable by " + ", ".join(_short(r) for r in found.missing))
    if found.extra:
        parts.append("still readable by " + ", ".join(_short(r) for r in found.extra))
    if found.regrouped:
        parts.append("the same recipients split differently across key groups (sops needs a key from each group)")
    return Finding(
        rel,
        None,
        RULE_DRIFT,
        f"recipients differ from .sops.yaml {rule.label}: {'; '.join(parts)}; run 'opssecrets reencrypt' to bring it in line",
    )

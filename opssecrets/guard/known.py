"""Known values: the current plaintext of the repository's secrets, compared in memory only.

The values come from ``sops decrypt`` through a pipe and live only in this process (and
forked workers); they are never written, logged or printed. A finding names the secret's
key and file, never its value or a prefix of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import EnvironmentProblem, NoIdentity, OpsError
from opssecrets.guard.findings import Finding
from opssecrets.repo import Repo
from opssecrets.secretfile import file_format, iter_leaves, parse_tree

RULE_KNOWN = "known-value"
MIN_KNOWN_LENGTH = 8  # shorter values ("true", "5432", "admin") occur everywhere


@dataclass(frozen=True)
class KnownValue:
    value: bytes
    key: str
    file: str

    def __repr__(self) -> str:  # never show the value, even in a traceback or a debugger
        return f"KnownValue(key={self.key!r}, file={self.file!r})"


def collect_known_values(repo: Repo) -> tuple[list[KnownValue], list[str]]:
    """Every value of at least MIN_KNOWN_LENGTH bytes in the files this identity can decrypt."""
    values: list[KnownValue] = []
    notes: list[str] = []
    files = repo.secret_files()
    decrypted = 0
    for secret_file in files:
        rel = repo.relpath(secret_file.path)
        try:
            plaintext = repo.sops.decrypt(rel)
        except NoIdentity:
            notes.append(f"{rel}: no identity here can decrypt it; its values were not compared (--known)")
            continue
        except EnvironmentProblem:
            raise
        except OpsError as exc:
            notes.append(f"{rel}: could not be decrypted ({exc.message}); its values were not compared (--known)")
            continue
        decrypted += 1
        values.extend(_values_of(rel, plaintext))
    if files and not decrypted:
        raise NoIdentity(
            "--known needs an identity that can decrypt the repository's sops files and none here can: "
            "set SOPS_AGE_KEY_FILE (or run 'opssecrets identity import'), or drop --known"
        )
    return values, notes


def _values_of(rel: str, plaintext: bytes) -> list[KnownValue]:
    if file_format(rel) == "binary":
        candidates = {plaintext, plaintext.rstrip(b"\r\n")}
        return [KnownValue(v, "data", rel) for v in candidates if len(v) >= MIN_KNOWN_LENGTH]
    try:
        text = plaintext.decode("utf-8")
        if file_format(rel) == "yaml":  # possibly several documents
            from opssecrets.yamllimits import safe_load_all

            # a hostile file decrypts to anything; safe_load_all refuses what would crash libyaml
            trees = [doc for doc in safe_load_all(text) if isinstance(doc, dict)]
        else:
            trees = [parse_tree(Path(rel), text)[0]]
    except Exception:  # decrypted but unparseable: nothing to compare (never show why: it holds values)
        return []
    out: list[KnownValue] = []
    for key, value in (leaf for tree in trees for leaf in iter_leaves(tree)):
        if value is None or isinstance(value, bool):
            continue
        raw = str(value).encode("utf-8")
        if len(raw) >= MIN_KNOWN_LENGTH:
            out.append(KnownValue(raw, key, rel))
    return out


def known_findings(rel: str, data: bytes, values: list[KnownValue]) -> list[Finding]:
    findings: list[Finding] = []
    for known in values:
        at = data.find(known.value)
        if at < 0 or rel == known.file:
            continue
        line = data.count(b"\n", 0, at) + 1
        findings.append(
            Finding(
                rel,
                line,
                RULE_KNOWN,
                f"holds the current value of {known.key} from {known.file} "
                "(value not shown); remove it, and rotate the secret if it was ever committed",
            )
        )
    return findings

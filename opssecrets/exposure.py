"""Who outside today's recipients could know each current value, read from git history.

Every file version any ref introduced is listed with git plumbing (``git log --raw``), each
distinct blob is read once (``git cat-file --batch``), and each distinct sops blob is opened
once, in parallel: its values with ``sops decrypt`` through a pipe, its data key with
``age -d`` on the operator's wrapped copy (``sops.age[].enc``), the identity handed to age on
a pipe. Values and data keys live only in this process and are compared in memory; nothing
derived from them is printed, logged or written.

A reader could know a current value when

- *same value*: a version holding that value was encrypted for them;
- *same data key*: a version holding that value was encrypted with a data key that some
  version encrypted for them also used (their wrapped copy of that data key is still in git,
  so it opens the ciphertext whatever the value);
- *in plaintext*: the value is in a blob that is not a sops file: anyone who can read the
  repository could know it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opssecrets import fsio, git
from opssecrets.errors import BadInput, EnvironmentProblem, NoIdentity, OpsError
from opssecrets.paths import CONFIG_NAME, EXPOSURE_FINDINGS
from opssecrets.repo import Repo
from opssecrets.secretfile import NotASopsFile, SecretFile, file_format, iter_leaves, looks_like_sops_file, parse_tree, read_secret_file
from opssecrets.sops import Sops, child_env, find_age, run, stderr_summary

HOW_VALUE = "same value"
HOW_DATA_KEY = "same data key"
HOW_PLAINTEXT = "in plaintext"
REPOSITORY_READERS = "repository readers"
WORKING_TREE = "working tree"
# Shorter values ("true", "5432") match everywhere by chance: they are compared only with the
# same key of the same file, never across keys, files or plaintext blobs.
MIN_SHARED_LENGTH = 8


@dataclass(frozen=True)
class Appearance:
    """Where one blob was introduced: ``order`` 0 is the newest commit."""

    order: int
    commit: str
    path: str


@dataclass
class Opened:
    """A decrypted sops blob, in memory only."""

    values: dict[str, bytes] = field(repr=False)
    data_key: bytes | None = field(repr=False)

    def __repr__(self) -> str:  # never show a value or a key, even in a traceback
        return f"Opened({len(self.values)} values)"


@dataclass(frozen=True)
class SopsBlob:
    blob: str
    path: str
    readers: frozenset[str]
    age_stanzas: tuple[tuple[str, str], ...]  # (recipient, armored enc)
    groups: int


@dataclass(frozen=True)
class ExposureFinding:
    file: str
    key: str
    reader: str
    recipient: str | None
    how: str
    since_commit: str
    found_in: str
    rotate_data_key: bool

    @property
    def fix(self) -> str:
        rotate = f"opssecrets rotate {self.key} --file {self.file}"
        if self.rotate_data_key:
            return f"sops rotate -i {self.file} (a new data key), then {rotate}"
        return rotate

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "key": self.key,
            "reader": self.reader,
            "how": self.how,
            "since_commit": self.since_commit,
            "found_in": self.found_in,
            "recipient": self.recipient,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class NotChecked:
    file: str
    commit: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "commit": self.commit, "reason": self.reason}


@dataclass
class ExposureReport:
    exposures: list[ExposureFinding]
    not_checked: list[NotChecked]
    complete: bool
    versions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "exposures": [e.to_json() for e in self.exposures],
            "not_checked": [n.to_json() for n in self.not_checked],
            "history_complete": self.complete,
        }


# --- the operator's identity, for age --------------------------------------------------------------


@dataclass(frozen=True)
class AgeIdentity:
    """How ``age -d`` gets the operator's identity: the user's own files by path, identity
    text (``SOPS_AGE_KEY`` or the keyring) on a pipe, never a file we write."""

    recipients: tuple[str, ...]
    files: tuple[str, ...] = ()
    text: str | None = field(default=None, repr=False)
    unusable: str = ""


def age_identity() -> AgeIdentity:
    from opssecrets.identity import SOURCE_DEFAULT_FILE, SOURCE_ENV, SOURCE_KEYRING, resolve_identity

    resolved = resolve_identity()
    if resolved.source == SOURCE_KEYRING:
        return AgeIdentity(resolved.recipients, text=resolved.env["SOPS_AGE_KEY"])
    if resolved.source == SOURCE_DEFAULT_FILE:
        return AgeIdentity(resolved.recipients, files=(resolved.where,))
    if resolved.source == SOURCE_ENV:
        files = tuple(
            str(Path(os.environ[var]).expanduser()) for var in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_FILE") if os.environ.get(var)
        )
        text = os.environ.get("SOPS_AGE_KEY") or None
        if not files and text is None:
            return AgeIdentity(resolved.recipients, unusable="the identity comes from SOPS_AGE_KEY_CMD, which age cannot run")
        return AgeIdentity(resolved.recipients, files=files, text=text)
    return AgeIdentity((), unusable="no identity")


def open_data_key(root: Path, identity: AgeIdentity, enc: str) -> bytes:
    """The data key an ``enc`` stanza wraps, opened with ``age -d`` (raises OpsError)."""
    age = find_age()
    args: list[str] = ["-d"]
    for path in identity.files:
        args += ["-i", path]
    read_end = write_end = -1
    try:
        if identity.text is not None:
            read_end, write_end = os.pipe()
            # an identity is far smaller than a pipe's buffer: this write never blocks
            os.write(write_end, identity.text.encode("utf-8") + b"\n")
            os.close(write_end)
            write_end = -1
            args += ["-i", f"/dev/fd/{read_end}"]
        fds = (read_end,) if read_end >= 0 else ()
        proc = run(age, args, cwd=root, stdin=enc.encode("ascii", "replace"), env=child_env(), pass_fds=fds)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    if proc.returncode != 0 or not proc.stdout:
        raise OpsError(f"age could not open the data key: {stderr_summary(proc.stderr)}")
    return proc.stdout


# --- reading history -------------------------------------------------------------------------------


def _sops_blob(blob: str, path: str, data: bytes) -> SopsBlob | None:
    if not looks_like_sops_file(data[: 1 << 20]):
        return None
    try:
        text = data.decode("utf-8")
        secret = read_secret_file(Path(path), text)
        _, meta = parse_tree(Path(path), text)
    except (UnicodeDecodeError, NotASopsFile, ValueError):
        return None
    readers = set(secret.metadata.age_recipients)
    for group in secret.metadata.groups:
        readers.update(f"{kind}:{key}" for kind, key in group.other)
    stanzas: list[tuple[str, str]] = []
    sources = meta.get("key_groups") if isinstance(meta, Mapping) and meta.get("key_groups") else [meta]
    for source in sources if isinstance(sources, list) else []:
        if isinstance(source, Mapping):
            for entry in source.get("age") or []:
                if isinstance(entry, Mapping) and entry.get("recipient") and entry.get("enc"):
                    stanzas.append((str(entry["recipient"]), str(entry["enc"])))
    return SopsBlob(blob, path, frozenset(readers), tuple(stanzas), len(secret.metadata.groups))


def _decrypt_values(sops: Sops, path: str, data: bytes) -> dict[str, bytes]:
    fmt = file_format(path)
    plaintext = sops.decrypt_data(data, fmt, name=path)
    try:
        tree = json.loads(plaintext)
    except ValueError:
        return {}
    values: dict[str, bytes] = {}
    for key, value in iter_leaves(tree):
        if value is None or isinstance(value, bool):
            continue
        values[key] = (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")
    return values


def _values(repo: Repo, blob: SopsBlob, data: bytes) -> dict[str, bytes] | str:
    """The blob's values, or why they could not be read."""
    try:
        return _decrypt_values(repo.sops, blob.path, data)
    except NoIdentity:
        return "your identity cannot decrypt it"
    except EnvironmentProblem:
        raise
    except OpsError as exc:
        return exc.message


def _operator_stanzas(identity: AgeIdentity, blob: SopsBlob) -> list[str]:
    """The wrapped data keys of ``blob`` the operator can try to open (none for Shamir groups,
    where each holds only a share)."""
    if identity.unusable or blob.groups > 1:
        return []
    return [enc for recipient, enc in blob.age_stanzas if not identity.recipients or recipient in identity.recipients]


def _open_or_none(root: Path, identity: AgeIdentity, enc: str) -> bytes | None:
    try:
        return open_data_key(root, identity, enc)
    except EnvironmentProblem:
        raise
    except OpsError:
        return None


def _workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def _names_at(repo: Repo, commits: Iterable[str]) -> dict[str, dict[str, str]]:
    """recipient -> short name, from ``.sops.yaml`` as committed at each commit."""
    from opssecrets.sopsconfig import SopsConfig, short_name

    wanted = sorted(set(commits) - {WORKING_TREE})
    texts = git.read_blobs(repo.root, [f"{commit}:{CONFIG_NAME}" for commit in wanted])
    parsed: dict[bytes, dict[str, str]] = {}
    out: dict[str, dict[str, str]] = {}
    for commit in wanted:
        text = texts.get(f"{commit}:{CONFIG_NAME}")
        if text is None:
            out[commit] = {}
            continue
        if text not in parsed:
            try:
                config = SopsConfig(text.decode("utf-8"))
                parsed[text] = {r.key: short_name(r.name) for r in config.recipients if r.name is not None}
            except Exception:  # a broken historical .sops.yaml names nobody
                parsed[text] = {}
        out[commit] = parsed[text]
    return out


def _encrypted_keys(tree: Mapping[str, Any], fmt: str) -> list[str]:
    if fmt == "binary":
        return ["data"]
    return [key for key, value in iter_leaves(tree) if isinstance(value, str) and value.startswith("ENC[")]


@dataclass
class _Current:
    rel: str
    blob: str
    sops: SopsBlob
    keys: list[str]
    today: frozenset[str]


def audit(repo: Repo, only: list[str] | None = None) -> ExposureReport:
    """Every exposure of every current value, and every version that could not be checked."""
    repo.require_config()
    secret_files = repo.secret_files(only)
    if only and not secret_files:
        raise BadInput(f"none of {', '.join(only)} is a sops-encrypted file; 'opssecrets access' lists them")
    identity = age_identity()
    if identity.unusable == "no identity":
        raise NoIdentity("exposure decrypts history and no identity is set: set SOPS_AGE_KEY_FILE or run 'opssecrets identity import'")

    appearances: dict[str, list[Appearance]] = {}
    order_of: dict[str, int] = {}
    for commit, path, blob in git.history_blobs(repo.root) if git.is_git_repo(repo.root) else []:
        order = order_of.setdefault(commit, len(order_of))
        appearances.setdefault(blob, []).append(Appearance(order, commit, path))
    contents = git.read_blobs(repo.root, list(appearances))

    current: list[_Current] = []
    for secret in secret_files:
        rel = repo.relpath(secret.path)
        data = secret.path.read_bytes()
        blob = git.blob_id(data)
        parsed = _sops_blob(blob, rel, data)
        if parsed is None:
            continue
        contents[blob] = data
        appearances.setdefault(blob, []).append(Appearance(-1, WORKING_TREE, rel))
        current.append(_Current(rel, blob, parsed, _encrypted_keys(secret.tree, secret.format), parsed.readers))

    sops_blobs: dict[str, SopsBlob] = {}
    plain_blobs: list[str] = []
    for blob, seen in appearances.items():
        content = contents.get(blob)
        if content is None:
            continue
        latest = min(seen, key=lambda a: a.order)
        parsed = _sops_blob(blob, latest.path, content)
        if parsed is not None:
            sops_blobs[blob] = parsed
        elif latest.path != CONFIG_NAME:
            plain_blobs.append(blob)

    not_checked: list[NotChecked] = []
    to_open: list[SopsBlob] = []
    for blob, parsed in sops_blobs.items():
        if identity.recipients and not (set(identity.recipients) & parsed.readers) and parsed.age_stanzas:
            latest = min(appearances[blob], key=lambda a: a.order)
            not_checked.append(NotChecked(latest.path, latest.commit, "not encrypted for your identity"))
        else:
            to_open.append(parsed)

    # `sops set` keeps a file's wrapped data keys: many versions share one, opened once
    stanzas = {blob.blob: _operator_stanzas(identity, blob) for blob in to_open}
    encs = list(dict.fromkeys(enc for found in stanzas.values() for enc in found))
    opened: dict[str, Opened] = {}
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        key_jobs = {enc: pool.submit(_open_or_none, repo.root, identity, enc) for enc in encs}
        value_jobs = {blob.blob: pool.submit(_values, repo, blob, contents[blob.blob]) for blob in to_open}
        data_keys = {enc: job.result() for enc, job in key_jobs.items()}
        for blob_id, job in value_jobs.items():
            result = job.result()
            if isinstance(result, str):
                latest = min(appearances[blob_id], key=lambda a: a.order)
                not_checked.append(NotChecked(latest.path, latest.commit, result))
                continue
            data_key = next((data_keys[enc] for enc in stanzas[blob_id] if data_keys[enc] is not None), None)
            opened[blob_id] = Opened(result, data_key)

    findings = _compare(current, sops_blobs, opened, appearances, contents, plain_blobs, not_checked, identity)
    complete = True
    if git.is_git_repo(repo.root) and git.is_shallow(repo.root):
        complete = False
        for commit in git.shallow_boundary(repo.root) or ["?"]:
            not_checked.append(
                NotChecked("*", commit, "shallow clone: history before this commit is missing; run 'git fetch --unshallow' and audit again")
            )
    names = _names_at(repo, [f.since_commit for f in findings])
    current_names = _names_at(repo, ["HEAD"]).get("HEAD", {})
    named = [
        _with_name(f, names.get(f.since_commit, {}), current_names) for f in findings
    ]
    named.sort(key=lambda f: (f.file, f.key, f.how, f.reader))
    not_checked.sort(key=lambda n: (n.file, n.commit))
    return ExposureReport(named, not_checked, complete, len(appearances))


def _with_name(finding: ExposureFinding, at_commit: Mapping[str, str], today: Mapping[str, str]) -> ExposureFinding:
    if finding.recipient is None:
        return finding
    name = at_commit.get(finding.recipient) or today.get(finding.recipient) or finding.recipient
    return ExposureFinding(
        finding.file, finding.key, name, finding.recipient, finding.how, finding.since_commit, finding.found_in, finding.rotate_data_key
    )


def _rank(appearance: Appearance) -> int:
    """Newest commit first; the working tree (not a version anyone else holds) last."""
    return appearance.order if appearance.order >= 0 else 1 << 30


def _compare(
    current: list[_Current],
    sops_blobs: Mapping[str, SopsBlob],
    opened: Mapping[str, Opened],
    appearances: Mapping[str, list[Appearance]],
    contents: Mapping[str, bytes],
    plain_blobs: list[str],
    not_checked: list[NotChecked],
    identity: AgeIdentity,
) -> list[ExposureFinding]:
    def latest(blob: str) -> Appearance:
        return min(appearances[blob], key=lambda a: (a.order < 0, a.order))

    # every reader who ever held each data key, with the newest version that gave it to them
    key_readers: dict[bytes, dict[str, Appearance]] = {}
    for blob, result in opened.items():
        if result.data_key is None:
            continue
        where = latest(blob)
        holders = key_readers.setdefault(result.data_key, {})
        for reader in sops_blobs[blob].readers:
            if reader not in holders or _rank(where) < _rank(holders[reader]):
                holders[reader] = where

    # value -> the versions holding it
    holding: dict[bytes, list[tuple[str, str]]] = {}
    for blob, result in opened.items():
        for key, value in result.values.items():
            holding.setdefault(value, []).append((blob, key))

    best: dict[tuple[str, str, str, str], tuple[int, ExposureFinding]] = {}

    def keep(order: int, finding: ExposureFinding) -> None:
        slot = (finding.file, finding.key, finding.recipient or finding.reader, finding.how)
        rank = order if order >= 0 else 1 << 30
        if slot not in best or rank < best[slot][0]:
            best[slot] = (rank, finding)

    for cur in current:
        mine = opened.get(cur.blob)
        if mine is None:
            continue  # already under not_checked
        if mine.data_key is None and cur.sops.groups <= 1 and cur.sops.age_stanzas:
            why = identity.unusable or "age could not open its data key with your identity"
            not_checked.append(NotChecked(cur.rel, WORKING_TREE, f"data key not compared: {why}"))
        for key in cur.keys:
            found = mine.values.get(key)
            if found is None:
                continue
            value = found
            for blob, held_as in holding.get(value, []):
                where = latest(blob)
                if len(value) < MIN_SHARED_LENGTH and not (held_as == key and any(a.path == cur.rel for a in appearances[blob])):
                    continue
                today_key = opened[blob].data_key is not None and opened[blob].data_key == mine.data_key
                # another current file (committed or not) counts; this file's own today's version does not
                if blob != cur.blob or where.order >= 0:
                    for reader in sops_blobs[blob].readers - cur.today:
                        keep(where.order, ExposureFinding(cur.rel, key, reader, reader, HOW_VALUE, where.commit, where.path, today_key))
                data_key = opened[blob].data_key
                if data_key is None:
                    continue
                for reader, via in key_readers.get(data_key, {}).items():
                    if reader in cur.today or reader in sops_blobs[blob].readers or via.order < 0:
                        continue
                    keep(via.order, ExposureFinding(cur.rel, key, reader, reader, HOW_DATA_KEY, via.commit, via.path, today_key))
            if len(value) >= MIN_SHARED_LENGTH:
                for blob in plain_blobs:
                    if value in contents[blob]:
                        where = latest(blob)
                        finding = ExposureFinding(cur.rel, key, REPOSITORY_READERS, None, HOW_PLAINTEXT, where.commit, where.path, False)
                        keep(where.order, finding)
    findings = [finding for _, finding in best.values()]
    # through an old data key a reader reaches only old ciphertext: news only if they never
    # held the value itself; today's data key always is (it needs its own fix)
    direct = {(f.file, f.key, f.recipient) for f in findings if f.how == HOW_VALUE}
    return [f for f in findings if f.how != HOW_DATA_KEY or f.rotate_data_key or (f.file, f.key, f.recipient) not in direct]


# --- joining `status` ------------------------------------------------------------------------------


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def _markers(file_tree: Mapping[str, Any], key: str, stanzas: Iterable[tuple[str, str]]) -> dict[str, str]:
    """What must change for a finding to count as fixed, as digests: the key's ciphertext (a
    new value changes it) and the file's wrapped data keys (a new data key changes them).
    Both are in the file in the clear; the digests say nothing about the value."""
    leaf = next((str(v) for k, v in iter_leaves(file_tree) if k == key), "")
    return {"value_marker": _digest([leaf]), "data_key_marker": _digest(sorted(enc for _, enc in stanzas))}


def _still_open(entry: Mapping[str, Any], now: Mapping[str, str]) -> bool:
    """A finding holds until its value changed, and for today's data key also the data key."""
    value_same = entry.get("value_marker") == now["value_marker"]
    if entry.get("data_key"):
        return value_same or entry.get("data_key_marker") == now["data_key_marker"]
    return value_same


def save_for_status(repo: Repo, report: ExposureReport) -> None:
    """Keep the findings (no values) in the state folder, where ``status`` reads them."""
    entries = []
    files: dict[str, tuple[SopsBlob | None, list[SecretFile]]] = {}
    for finding in report.exposures:
        if finding.file not in files:
            path = repo.root / finding.file
            files[finding.file] = (
                _sops_blob("", finding.file, path.read_bytes()) if path.is_file() else None,
                repo.secret_files([finding.file]),
            )
        parsed, secret = files[finding.file]
        if parsed is None or not secret:
            continue
        entries.append(
            {
                "file": finding.file,
                "key": finding.key,
                "reader": finding.reader,
                "how": finding.how,
                "since_commit": finding.since_commit,
                **_markers(secret[0].tree, finding.key, parsed.age_stanzas),
                "data_key": finding.rotate_data_key,
            }
        )
    state = repo.state_dir
    state.mkdir(parents=True, exist_ok=True)
    findings = json.dumps({"version": 1, "exposures": entries}, indent=1, sort_keys=True)
    fsio.write_atomic(state / EXPOSURE_FINDINGS, findings.encode("utf-8"))


def _saved_entries(repo: Repo, relpath: str, file_tree: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    """The last audit's findings for ``relpath`` that are still unfixed (their marker holds)."""
    try:
        data = json.loads((repo.state_dir / EXPOSURE_FINDINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = [e for e in data.get("exposures", []) if isinstance(e, dict) and e.get("file") == relpath] if isinstance(data, dict) else []
    if not entries:
        return []
    try:
        parsed = _sops_blob("", relpath, path.read_bytes())
    except OSError:
        return []
    stanzas = parsed.age_stanzas if parsed else ()
    return [e for e in entries if _still_open(e, _markers(file_tree, str(e.get("key")), stanzas))]


def saved_exposures(repo: Repo, relpath: str, file_tree: Mapping[str, Any], path: Path) -> dict[str, list[str]]:
    """key -> "reader (how, since COMMIT)" for the last audit's findings still unfixed in ``relpath``."""
    out: dict[str, list[str]] = {}
    for entry in _saved_entries(repo, relpath, file_tree, path):
        label = f"{entry.get('reader')} ({entry.get('how')}, since {str(entry.get('since_commit'))[:10]})"
        out.setdefault(str(entry.get("key")), []).append(label)
    return out


def saved_data_key_readers(repo: Repo, relpath: str, file_tree: Mapping[str, Any], path: Path) -> list[str]:
    """Readers the last audit found holding this file's current data key (a new value needs a new data key)."""
    entries = _saved_entries(repo, relpath, file_tree, path)
    return sorted({str(e.get("reader")) for e in entries if e.get("data_key") and e.get("how") == HOW_DATA_KEY})

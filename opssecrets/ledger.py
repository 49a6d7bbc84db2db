"""The rotation ledger: when each secret was rotated, by whom, why, and whether it is exposed.

It lives at ``.opssecrets/ledger.json`` in the repository and is committed with the secret
files. It is plaintext and holds no secret material and nothing derived from a value (no
hash, no length, no prefix): only file paths, key names, times, recipient names and the
operator's reason. Layout::

    {
      "version": 1,
      "files": {
        "secrets/secrets.yaml": {
          "data_key_rotated_at": "2026-11-26T10:00:00Z",
          "data_key_readers": ["age1..."],
          "data_key_head": "<the git commit HEAD was at then>",
          "keys": {
            "slack-bot-token": {
              "rotated_at": "2026-11-26T10:00:00Z",
              "by": "dan",
              "reason": "quarterly",
              "exposed": true,
              "exposed_to": [{"reader": "alice", "since": "2026-11-27T09:00:00Z", "marked_by": "dan"}]
            }
          }
        }
      }
    }

``exposed`` is true while ``exposed_to`` is not empty; only a rotation of that key clears
it. ``data_key_rotated_at`` is when the file's sops data key was last replaced
(``sops rotate``), which is what cuts a removed reader off from values set afterwards; an
exposure recorded before that carries ``"data_key_rotated": true``. ``data_key_readers`` are
the age recipients (public keys) the new data key was wrapped for, so a later check can tell
who could ever have held the current data key; ``data_key_head`` is the git commit HEAD
was at, so "changes since" is a commit range, not a clock comparison. Recording order matters,
not clock time: a data-key rotation covers every exposure already in the ledger.
Writes are atomic (temp file + rename) under a lock, with keys sorted so diffs stay small.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opssecrets.transaction import Plan

from opssecrets import fsio
from opssecrets.errors import BadInput
from opssecrets.paths import LEDGER_LOCK, LEDGER_PATH, state_dir

LEDGER_VERSION = 1


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_time(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; sops writes ``2026-11-26T10:00:00Z``) in UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Exposure:
    reader: str
    since: datetime
    marked_by: str | None = None
    # True once the file's data key was replaced after this exposure: the reader's old
    # wrapped copy no longer opens values written from then on.
    data_key_rotated: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reader": self.reader, "since": format_time(self.since)}
        if self.marked_by:
            data["marked_by"] = self.marked_by
        if self.data_key_rotated:
            data["data_key_rotated"] = True
        return data


@dataclass
class KeyRecord:
    rotated_at: datetime | None = None
    by: str | None = None
    reason: str | None = None
    exposed_to: list[Exposure] = field(default_factory=list)

    @property
    def exposed(self) -> bool:
        return bool(self.exposed_to)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.rotated_at is not None:
            data["rotated_at"] = format_time(self.rotated_at)
        if self.by:
            data["by"] = self.by
        if self.reason:
            data["reason"] = self.reason
        data["exposed"] = self.exposed
        if self.exposed_to:
            data["exposed_to"] = [e.to_json() for e in self.exposed_to]
        return data


@dataclass
class FileRecord:
    data_key_rotated_at: datetime | None = None
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    data_key_readers: list[str] | None = None
    data_key_head: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.data_key_rotated_at is not None:
            data["data_key_rotated_at"] = format_time(self.data_key_rotated_at)
        if self.data_key_readers is not None:
            data["data_key_readers"] = sorted(self.data_key_readers)
        if self.data_key_head is not None:
            data["data_key_head"] = self.data_key_head
        data["keys"] = {key: self.keys[key].to_json() for key in sorted(self.keys)}
        return data

    def exposures_since_data_key_rotation(self) -> list[tuple[str, Exposure]]:
        """Exposures of this file's keys not yet followed by a data-key rotation."""
        return [(key, e) for key, record in self.keys.items() for e in record.exposed_to if not e.data_key_rotated]


@dataclass
class RotationLedger:
    """The ledger of one repository, loaded into memory; ``save`` writes it back atomically."""

    root: Path
    files: dict[str, FileRecord] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / LEDGER_PATH

    @classmethod
    def load(cls, root: Path) -> RotationLedger:
        path = root / LEDGER_PATH
        if not path.exists():
            return cls(root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInput(f"{LEDGER_PATH}, line {exc.lineno}: not valid JSON ({exc.msg}); restore it from git") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{LEDGER_PATH}: cannot read it ({exc.__class__.__name__}); restore it from git") from exc
        try:
            return cls(root, _files_from_json(data))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInput(f"{LEDGER_PATH}: unexpected layout ({exc.__class__.__name__}: {exc}); restore it from git") from exc

    def file(self, relpath: str) -> FileRecord:
        return self.files.setdefault(relpath, FileRecord())

    def get(self, relpath: str, key: str) -> KeyRecord | None:
        record = self.files.get(relpath)
        return record.keys.get(key) if record else None

    def record_rotation(self, relpath: str, key: str, *, when: datetime, by: str | None, reason: str | None) -> None:
        """A new value for ``key``: clears its exposures."""
        self.file(relpath).keys[key] = KeyRecord(rotated_at=when, by=by, reason=reason)

    def record_data_key_rotation(self, relpath: str, when: datetime, *, readers: Sequence[str] | None, head: str | None) -> None:
        """The file's data key was replaced: every exposure recorded so far is cut off from
        values written from now on (the keys stay exposed until each is rotated). ``readers``
        are the file's age recipients now, the new data key's readers (None: not a sops
        file); ``head`` is the git commit HEAD is at."""
        record = self.file(relpath)
        record.data_key_rotated_at = when
        record.data_key_readers = sorted(readers) if readers is not None else None
        record.data_key_head = head
        for key_record in record.keys.values():
            key_record.exposed_to = [
                Exposure(e.reader, e.since, e.marked_by, data_key_rotated=True) for e in key_record.exposed_to
            ]

    def mark_exposed(self, relpath: str, keys: Sequence[str], *, reader: str, when: datetime, operator: str | None) -> None:
        file_record = self.file(relpath)
        for key in keys:
            record = file_record.keys.setdefault(key, KeyRecord())
            if any(e.reader == reader for e in record.exposed_to):
                continue  # the first exposure to a reader is the one that counts
            record.exposed_to.append(Exposure(reader=reader, since=when, marked_by=operator))

    def to_json(self) -> dict[str, Any]:
        return {"version": LEDGER_VERSION, "files": {rel: self.files[rel].to_json() for rel in sorted(self.files)}}

    def render(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fsio.write_atomic(self.path, self.render().encode("utf-8"), 0o644)


def _files_from_json(data: Any) -> dict[str, FileRecord]:
    if not isinstance(data, dict):
        raise TypeError("top level is not an object")
    version = data.get("version", LEDGER_VERSION)
    if version != LEDGER_VERSION:
        raise ValueError(f"version {version} (this opssecrets reads version {LEDGER_VERSION}; upgrade it)")
    files: dict[str, FileRecord] = {}
    for rel, raw in (data.get("files") or {}).items():
        readers = raw.get("data_key_readers")
        record = FileRecord(
            data_key_rotated_at=parse_time(raw["data_key_rotated_at"]) if raw.get("data_key_rotated_at") else None,
            data_key_readers=[str(r) for r in readers] if isinstance(readers, list) else None,
            data_key_head=str(raw["data_key_head"]) if raw.get("data_key_head") else None,
        )
        for key, entry in (raw.get("keys") or {}).items():
            record.keys[key] = KeyRecord(
                rotated_at=parse_time(entry["rotated_at"]) if entry.get("rotated_at") else None,
                by=entry.get("by"),
                reason=entry.get("reason"),
                exposed_to=[
                    Exposure(
                        reader=str(e["reader"]),
                        since=parse_time(e["since"]),
                        marked_by=e.get("marked_by"),
                        data_key_rotated=bool(e.get("data_key_rotated", False)),
                    )
                    for e in entry.get("exposed_to") or []
                ],
            )
        files[rel] = record
    return files


@contextlib.contextmanager
def ledger_lock(root: Path) -> Iterator[None]:
    """Serialise read-modify-write of the ledger between concurrent opssecrets runs."""
    folder = state_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with fsio.locked(folder / LEDGER_LOCK, wait=True):
        # a run killed inside save() leaves its temp file; under the lock nobody else owns one
        fsio.remove_leftovers(writes=[root / LEDGER_PATH])
        yield


@contextlib.contextmanager
def editing(root: Path) -> Iterator[RotationLedger]:
    """Load the ledger under the lock, let the caller change it, save it if no error."""
    with ledger_lock(root):
        ledger = RotationLedger.load(root)
        yield ledger
        ledger.save()


def _relpath(root: Path, file: str | Path) -> str:
    path = Path(file)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError as exc:
            raise BadInput(f"{file} is outside the repository {root}") from exc
    return path.as_posix()


# --- the API the recipient commands call ---------------------------------------------------


def mark_exposed(
    root: Path,
    file: str,
    keys: list[str],
    reader: str,
    when: datetime | None = None,
    operator: str | None = None,
) -> None:
    """Record that ``reader`` (a removed or compromised recipient) could read ``keys`` of ``file``.

    Called by ``share --outside-rule`` (the recipient commands use ``record_exposures``).
    ``file`` is relative to ``root`` (posix). Each key stays exposed until it is
    rotated; ``opssecrets rotate`` also rotates the file's data key first if it was not
    rotated since. ``operator`` is who marked it (``identity.operator_name``), recorded as given.
    """
    if not keys:
        return
    with editing(root) as ledger:
        ledger.mark_exposed(_relpath(root, file), keys, reader=reader, when=when or now_utc(), operator=operator)


def record_data_key_rotation(
    root: Path, file: str, when: datetime | None = None, *, readers: Sequence[str] | None, head: str | None
) -> None:
    """Record that ``file``'s data key was replaced (``sops rotate``) at ``when`` (default now),
    wrapped for ``readers`` (the file's age recipients now), with HEAD at ``head``."""
    with editing(root) as ledger:
        ledger.record_data_key_rotation(_relpath(root, file), when or now_utc(), readers=readers, head=head)


def record_exposures(root: Path, plan: Plan, reader: str, when: datetime | None = None, *, operator: str | None) -> None:
    """Before a recipient change is applied: every key of every file whose data key the plan
    rotates was readable by ``reader`` (removed, revoked, or a compromised host key); mark them
    exposed, marked by ``operator``. Recorded first, so a run killed half-way has already said
    what leaked."""
    rotated = [change for change in plan.files if change.rotate]
    if not rotated:
        return
    moment = when or now_utc()
    with editing(root) as ledger:
        for change in rotated:
            ledger.mark_exposed(change.relpath, change.keys, reader=reader, when=moment, operator=operator)


@contextlib.contextmanager
def exposures_undone_on_failure(root: Path, plan: Plan) -> Iterator[None]:
    """Around a recipient change whose exposures were recorded first: if the change fails
    before any file was replaced, it never happened (the reader still reads everything, and
    the run says so), so the ledger goes back byte for byte. A run killed outright keeps
    them: the next run finishes the change. A failure after some file was replaced keeps
    them too: those exposures did happen."""
    path = root / LEDGER_PATH
    try:
        saved: bytes | None = path.read_bytes()
    except FileNotFoundError:
        saved = None
    originals = {change.relpath: _digest(root / change.relpath) for change in plan.files}
    try:
        yield
    except BaseException:
        if all(_digest(root / rel) == digest for rel, digest in originals.items()):
            with ledger_lock(root):
                if saved is None:
                    path.unlink(missing_ok=True)
                else:
                    fsio.write_atomic(path, saved, 0o644)
        raise


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None

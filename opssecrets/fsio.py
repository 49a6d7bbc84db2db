"""The file-system primitives every write of opssecrets goes through, so each reliability
promise (see docs/reliability.md) is kept in one place.

- :func:`write_atomic`: a temp file in the same folder, written, fsynced, given its mode,
  renamed over the target, and the folder fsynced, so a reader (or a power loss) sees the
  old file or the new one, never a mix.
- :func:`create_private`: a new file that is mode 0600 from its first byte.
- :func:`move_into_place` and :func:`fsync_folder`: a staged file renamed over the original
  (many files, then each folder once).
- :func:`locked`: an ``flock`` on a lock file; the kernel releases it when its holder dies,
  so a killed run never leaves a stale lock.
- :func:`remove_leftovers`: what a killed run left (an unfinished write's temp file, a
  staging folder); called only under the lock that guards those files.

No other module calls ``os.replace``, ``os.fsync`` or ``fcntl.flock`` (tests/test_fsio.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is the pid it wrote, or "unknown"."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` all at once (temp file ``.<name>.<random>.tmp`` next to
    it, so the rename never crosses a filesystem). The mode is set after the data is on disk
    and before the rename: a reader never sees a wider file than asked for."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)  # the rename itself survives a power loss


def create_private(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 from the first byte, holding ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the renames into ``folder`` durable (a rename lives in the folder's entry)."""
    fsync_file(folder)


def move_into_place(staged: Path, target: Path, mode: int) -> None:
    """Rename a finished staged copy over ``target`` with ``mode``, its data fsynced first.
    The caller fsyncs each target folder once after its renames (:func:`fsync_folder`)."""
    os.chmod(staged, mode)
    fsync_file(staged)
    os.replace(staged, target)


@contextmanager
def locked(path: Path, *, wait: bool) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600). ``wait=False`` raises
    :class:`LockHeld` at once if another process holds it. The holder's pid is written into
    the file, for the message another run shows."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def remove_leftovers(*, writes: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
    """Remove the temp files of unfinished :func:`write_atomic` calls to each of ``writes``
    and each folder in ``folders``. Only under the lock that every writer of them holds: a
    live run's temp file is never anybody's leftover."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for path in writes:
        for leftover in path.parent.glob(f"{_temp_prefix(path)}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                leftover.unlink()

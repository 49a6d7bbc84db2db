"""One error hierarchy; each class carries the exit code the CLI returns for it.

Exit codes (documented in the README):
  0 ok; 1 a check found problems; 2 usage or bad input; 3 environment (sops/age missing or
  too old, no identity that can decrypt, a folder that cannot be written, a full disk);
  4 sops/age failed or did not finish before the deadline; 130 interrupted; 143 terminated (SIGTERM).

Messages are one line, name the problem and the fix, and never hold a secret value.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_TOOL_FAILED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15, as a shell reports it
EXIT_INTERNAL = 70  # a bug: the traceback's frames go to a log, not the screen


class OpsError(Exception):
    """An expected failure: shown as one line, mapped to a fixed exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(OpsError):
    """The user's arguments or files are wrong (exit 2)."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(OpsError):
    """A needed tool, file or identity is missing from this machine (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class ToolFailed(OpsError):
    """sops or age ran and failed (exit 4); ``detail`` holds their stderr, never a secret."""

    exit_code = EXIT_TOOL_FAILED

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class NoIdentity(EnvironmentProblem):
    """No available identity can decrypt a file's data key (exit 3)."""


class Interrupted(OpsError):
    """Ctrl-C arrived after some files were already replaced: the message says which (exit 130)."""

    exit_code = EXIT_INTERRUPTED


class Findings(OpsError):
    """A check ran and found problems (exit 1)."""

    exit_code = EXIT_FINDINGS


# The errors a full disk, a quota or a file-size limit give a write (ENOSPC, EDQUOT, EFBIG).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


# The errors of a folder this user cannot change: no permission, a read-only filesystem, a
# file where a folder should be (so a state folder cannot be created under it).
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def environment_fault(exc: OSError, doing: str, then: str = "") -> EnvironmentProblem | None:
    """One line for a write that failed for lack of space, or because the path cannot be
    written (permissions, read-only filesystem, a file in the way); ``None`` for any other
    OSError, which is a bug. The path is named when the error carries one."""
    path = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in DISK_FULL_ERRNOS:
        reason = exc.strerror or "no space left"
        return EnvironmentProblem(
            f"{doing} failed{path}: {reason} (disk full or a file-size limit); {then or 'nothing was changed'}. "
            "Free some space and run the same command again"
        )
    if exc.errno in NOT_WRITABLE_ERRNOS:
        reason = exc.strerror or "not writable"
        # a rename names the staged copy first and the file it replaces second: the second
        # is in the user's folder, the one that refused
        where = exc.filename2 or exc.filename or "a file in the repository or its state folder"
        return EnvironmentProblem(
            f"{doing} failed: {where}: {reason}; {then or 'nothing was changed'}. "
            "Make it writable for this user (or run as its owner) and run the same command again"
        )
    return None

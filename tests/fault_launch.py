"""Run the opssecrets CLI with a kill switch: SIGKILL at the Nth matching Python audit event.

Test-only, outside the package: it adds a ``sys.addaudithook`` hook (PEP 578) before
importing opssecrets, so the product code carries no test hook. The events are the
operations a crash can land between:

- ``popen``: a child (sops, git) is about to be started;
- ``rename``: an ``os.replace`` is about to put a staged file, the ledger or ``.sops.yaml``
  in place (between two files);
- ``config-tmp``: the temp file next to ``.sops.yaml`` was just created (empty);
- ``config-chmod``: the new ``.sops.yaml`` text is written and fsynced, not yet renamed;
- ``exit``: the command finished, the process has not exited yet.

Environment: ``OPSSECRETS_TEST_KILL_AT`` = ``KIND:N`` (kill at the Nth event of KIND, from
1), or ``KIND:N:SIGNAL`` to send another signal there (``SIGINT``: a Ctrl-C; ``os.kill`` to
itself runs the Python handler at once, so KeyboardInterrupt is raised before the
operation); ``OPSSECRETS_TEST_FSIZE_AT`` = ``KIND:N:BYTES`` (at that event, set
``RLIMIT_FSIZE`` to BYTES: from then on a write past BYTES fails with EFBIG, as on a full disk; Python ignores
SIGXFSZ); ``OPSSECRETS_TEST_EVENTS`` = a file each event is appended to (``KIND N DETAIL``),
used to count the points of an uninterrupted run. Usage: ``python fault_launch.py ARGS``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

_KILL_KIND, _, _KILL_N = os.environ.get("OPSSECRETS_TEST_KILL_AT", "").partition(":")
_KILL_N, _, _KILL_SIGNAL = _KILL_N.partition(":")
_KILL_AT = f"{_KILL_KIND}:{_KILL_N}"
_EVENTS = os.environ.get("OPSSECRETS_TEST_EVENTS", "")
_FSIZE_AT, _, _FSIZE = os.environ.get("OPSSECRETS_TEST_FSIZE_AT", "").rpartition(":")
_lock = threading.Lock()
_counts: dict[str, int] = {}
_in_hook = threading.local()


def _kind(event: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
    if event == "subprocess.Popen":
        argv = args[1] if len(args) > 1 else ()
        return "popen", " ".join(Path(str(a)).name if i == 0 else str(a) for i, a in enumerate(list(argv)[:3]))
    if event == "os.rename":
        return "rename", Path(os.fsdecode(args[1])).name
    if event == "open" and isinstance(args[0], (str, bytes)):
        name = Path(os.fsdecode(args[0])).name
        if ".sops.yaml." in name and name.endswith(".tmp"):
            return "config-tmp", name
        return None
    if event == "os.chmod" and isinstance(args[0], (str, bytes)):
        name = Path(os.fsdecode(args[0])).name
        if ".sops.yaml." in name and name.endswith(".tmp"):
            return "config-chmod", name
    return None


def _event(kind: str, detail: str) -> int:
    with _lock:
        n = _counts.get(kind, 0) + 1
        _counts[kind] = n
        if _EVENTS:
            with open(_EVENTS, "a", encoding="utf-8") as log:
                log.write(f"{kind} {n} {detail}\n")
        if f"{kind}:{n}" == _KILL_AT and not _KILL_SIGNAL:
            os.kill(os.getpid(), signal.SIGKILL)
        if f"{kind}:{n}" == _FSIZE_AT:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (int(_FSIZE), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        return n


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_in_hook, "active", False):
        return
    _in_hook.active = True
    try:
        found = _kind(event, args)
        if found is not None:
            n = _event(*found)
            if _KILL_SIGNAL and f"{found[0]}:{n}" == _KILL_AT:
                os.kill(os.getpid(), getattr(signal, _KILL_SIGNAL))
    finally:
        _in_hook.active = False


def main() -> int:
    sys.addaudithook(_hook)
    from opssecrets.cli import main as cli_main

    code = cli_main(sys.argv[1:])
    _event("exit", str(code))
    return code


if __name__ == "__main__":
    sys.exit(main())

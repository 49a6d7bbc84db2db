"""Security promises, checked by watching real runs (docs/security.md names each test).

A recorder sees every child process the CLI starts, two ways: a Python audit hook in the
test process (``subprocess.Popen``/``os.exec``/``os.posix_spawn`` events carry the argv
and the environment given to the child, ``open`` events name every file written) and
wrapper programs in front of sops, age (``OPSSECRETS_SOPS``/``OPSSECRETS_AGE``) and git
(first on ``PATH``) that log the argv and environment the child really received. Each
time a child starts, every file written so far, everything in ``TMPDIR`` (pointed at a
test folder) and the repository's state folder are scanned for plaintext values and
checked for mode 0600. No opssecrets function is replaced or patched.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import AgeKey, OpsRepo, Result, cli_argv, cli_env
from guard_support import slack_bot
from rotation_support import FakeService, Platform, make_platform

from opssecrets import git as git_module
from opssecrets.sops import find_age, find_sops

SECRETS = "secrets/secrets.yaml"
WRAPPER = """#!/bin/sh
n="$(date +%s%N).$$"
printf '%s\\0' "$0" "$@" > "$OPSSECRETS_TEST_RECORD/{name}.$n.argv"
env -0 > "$OPSSECRETS_TEST_RECORD/{name}.$n.env"
exec {real} "$@"
"""


@dataclass
class Child:
    argv: list[str]
    env: dict[str, str]
    via: str  # "audit" or "wrapper"

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name


@dataclass
class Recorder:
    secrets: list[str]
    watch: list[Path]
    children: list[Child] = field(default_factory=list)
    written: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    busy: bool = True  # off until watching() starts

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Record only what the CLI does (not the test's own git calls)."""
        for old in self.record_dir.iterdir():  # type: ignore[attr-defined]
            old.unlink()
        self.busy = False
        try:
            yield
        finally:
            self.busy = True

    def scan_files(self, moment: str) -> None:
        paths = {Path(p) for p in self.written}
        for folder in self.watch:
            if folder.is_dir():
                paths.update(p for p in folder.rglob("*"))
        for path in sorted(paths):
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            for secret in self.secrets:
                if secret.encode() in data:
                    self.problems.append(f"{moment}: plaintext value in {path}")
            if any(path.is_relative_to(folder) for folder in self.watch) and info.st_mode & 0o077:
                self.problems.append(f"{moment}: {path} has mode {oct(info.st_mode & 0o777)}, not 0600")


_ACTIVE: Recorder | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    recorder = _ACTIVE
    if recorder is None or recorder.busy:
        return
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)
        )
        if writing and isinstance(path, (str, bytes)):
            recorder.written.add(os.fsdecode(path))
        return
    if event not in ("subprocess.Popen", "os.exec", "os.posix_spawn"):
        return
    recorder.busy = True
    try:
        if event == "subprocess.Popen":
            _executable, argv, _cwd, env = args
        else:
            _path, argv, env = args
        argv = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes)) else argv)]
        child_env = dict(os.environ) if env is None else {os.fsdecode(k): os.fsdecode(v) for k, v in dict(env).items()}
        recorder.children.append(Child(argv, child_env, "audit"))
        recorder.scan_files(f"before {Path(argv[0]).name}")
    finally:
        recorder.busy = False


sys.addaudithook(_audit)


@pytest.fixture
def recorder(repo: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    global _ACTIVE
    record = tmp_path / "record"
    record.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    for name, real in (("sops", find_sops().path), ("age", find_age().path), ("git", _which("git"))):
        wrapper = bindir / name
        wrapper.write_text(WRAPPER.format(name=name, real=real))
        wrapper.chmod(0o755)
    monkeypatch.setenv("OPSSECRETS_TEST_RECORD", str(record))
    monkeypatch.setenv("OPSSECRETS_SOPS", str(bindir / "sops"))
    monkeypatch.setenv("OPSSECRETS_AGE", str(bindir / "age"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)  # the stdlib caches TMPDIR; make it read it again
    rec = Recorder(secrets=[repo.operator.identity], watch=[tmpdir, repo.root / ".git" / "opssecrets"])
    rec.record_dir = record  # type: ignore[attr-defined]
    _ACTIVE = rec
    try:
        yield rec
    finally:
        _ACTIVE = None


def _stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, script: str) -> None:
    """Put ``script`` (``{real}``: the real binary) in front of the real sops or age."""
    real = (find_sops() if program == "sops" else find_age()).path
    wrapper = tmp_path / f"stand-in-{program}" / program
    wrapper.parent.mkdir()
    wrapper.write_text(script.format(real=real))
    wrapper.chmod(0o755)
    monkeypatch.setenv(f"OPSSECRETS_{program.upper()}", str(wrapper))


def _which(name: str) -> str:
    import shutil

    found = shutil.which(name)
    assert found is not None
    return found


def wrapped_children(rec: Recorder) -> list[Child]:
    record: Path = rec.record_dir  # type: ignore[attr-defined]
    out = []
    for argv_file in sorted(record.glob("*.argv")):
        argv = argv_file.read_bytes().split(b"\0")[:-1]
        env_raw = argv_file.with_suffix(".env").read_bytes().split(b"\0")
        env = dict(item.decode("utf-8", "replace").partition("=")[::2] for item in env_raw if b"=" in item)
        out.append(Child([argv_file.name.split(".")[0], *(a.decode("utf-8", "replace") for a in argv[1:])], env, "wrapper"))
    return out


def assert_promises_held(rec: Recorder, results: list[Result], home: Path, ran: frozenset[str] = frozenset({"sops", "git"})) -> None:
    """``ran``: programs the command must have started, so the recorder saw its children."""
    rec.scan_files("after the run")
    children = rec.children + wrapped_children(rec)
    programs = {c.program for c in children}
    assert ran <= programs, programs
    for child in children:
        for secret in rec.secrets:
            assert not any(secret in arg for arg in child.argv), f"a value in the argv of {child.program} ({child.via})"
            if child.program not in ("sops", "age"):
                leaked = [k for k, v in child.env.items() if secret in v]
                assert not leaked, f"a value in the environment of {child.program} ({child.via}): {leaked}"
    for result in results:
        for secret in rec.secrets:
            assert secret not in result.out and secret not in result.err, result
    for log in home.rglob("*"):
        if log.is_file() and "keyring" not in log.name:
            data = log.read_bytes()
            assert not any(s.encode() in data for s in rec.secrets), f"a value in {log}"
    assert rec.problems == []
    leftovers = [p for p in rec.watch[0].rglob("*")]
    assert leftovers == [], f"temp files left behind: {leftovers}"
    state = rec.watch[1]
    assert not list(state.glob("**/stage-*")) and not list(state.glob("**/rotate-*")), list(state.rglob("*"))


@pytest.fixture
def platform(repo: OpsRepo) -> Platform:
    return make_platform(repo)


def test_values_stay_out_of_argv_env_temp_files_and_output(
    platform: Platform, slack: FakeService, recorder: Recorder, isolated_home: Path
) -> None:
    """rotate, verify, share, check --known, doctor, add-engineer, remove-engineer, status, access."""
    repo = platform.repo
    new = slack_bot()
    slack.valid.add(new)
    bob = AgeKey.new()
    recorder.secrets += [*platform.tokens.values(), new, bob.identity]
    recorder.secrets = [s for s in recorder.secrets if len(s) >= 12]  # values long enough to be unique
    with recorder.watching():
        results = [
            repo.ops("add-engineer", "bob", "--age-key", bob.recipient, "--admin"),
            repo.ops("rotate", "slack-bot-token", "--stdin", "--reason", "security test", stdin=new + "\n"),
            repo.ops("verify", "slack-bot-token"),
            repo.ops("share", "slack-bot-token", "--to", "bob"),
            repo.ops("check", "--known", "--all"),
            repo.ops("doctor"),
            repo.ops("status"),
            repo.ops("remove-engineer", "bob"),
            # every output format: there is no verbose mode; --json is the other one
            repo.ops("status", "--json"),
            repo.ops("doctor", "--json"),
            repo.ops("access", "--json"),
            repo.ops("check", "--known", "--all", "--json"),
            repo.ops("recipients"),
        ]
    assert [r.code for r in results[:4]] == [0, 0, 0, 0], results
    assert results[4].code in (0, 1) and results[5].code in (0, 1), results
    assert results[7].code == 0, results[7]
    assert_promises_held(recorder, results, isolated_home)
    # the operator's identity went to sops through its environment, and only there
    assert any(c.program == "sops" and repo.operator.identity in c.env.get("SOPS_AGE_KEY", "") for c in recorder.children)


def test_git_children_get_no_identity_or_value_from_our_environment(repo: OpsRepo, recorder: Recorder) -> None:
    """SOPS_AGE_KEY (set by the user for sops) is not handed on to git or its hooks."""
    repo.write(".sops.yaml", f"creation_rules:\n  - age: {repo.operator.recipient}\n")
    repo.git("add", ".sops.yaml")
    assert git_module.toplevel(repo.root) is not None
    with recorder.watching():
        result = repo.ops("check", "--staged")
    assert result.code == 0, result
    gits = [c for c in recorder.children + wrapped_children(recorder) if c.program == "git"]
    assert gits
    for child in gits:
        assert "SOPS_AGE_KEY" not in child.env, child.argv
        assert repo.operator.identity not in "".join(child.env.values())


# -- unexpected errors: frames go to a log, never the value ----------------------------------------

GARBAGE_SOPS = """#!/bin/sh
# sops, except that reading one value returns it with a header-breaking line after it
for arg in "$@"; do
  if [ "$arg" = "--extract" ]; then
    {real} "$@" && printf '\\r\\nX-Injected: yes'
    exit 0
  fi
done
exec {real} "$@"
"""


def test_an_unexpected_error_carrying_a_value_shows_and_logs_no_value(
    platform: Platform, slack: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """A sops that answers garbage makes http.client raise ValueError('Invalid header value
    b"Bearer <token>..."'): the message holds the token; opssecrets prints a one-line
    internal error and writes only frames to crash.log."""
    _stand_in(tmp_path, monkeypatch, "sops", GARBAGE_SOPS)
    token = platform.tokens["slack-bot-token"]
    slack.valid.add(token)
    for result in (platform.repo.ops("verify", "slack-bot-token"), platform.repo.ops_proc("verify", "slack-bot-token")):
        assert result.code == 70, result
        assert "internal error (ValueError)" in result.err
        assert token not in result.out + result.err
    log = isolated_home / ".local" / "state" / "opssecrets" / "crash.log"
    text = log.read_text()
    assert "ValueError" in text and 'File "' in text
    assert token not in text and "Bearer" not in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# -- temp files are removed on every exit path ---------------------------------------------------

FAILING_SOPS = """#!/bin/sh
# sops, except that `set` fails after the value was read from stdin
for arg in "$@"; do
  if [ "$arg" = "set" ]; then cat > /dev/null; echo "sops: injected failure" >&2; exit 9; fi
done
exec {real} "$@"
"""


def test_failed_rotation_leaves_no_temp_file_and_changes_nothing(
    platform: Platform, slack: FakeService, recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    _stand_in(tmp_path, monkeypatch, "sops", FAILING_SOPS)
    new = slack_bot()
    slack.valid.add(new)
    recorder.secrets += [new, *(v for v in platform.tokens.values() if len(v) >= 12)]
    before = platform.repo.snapshot()
    with recorder.watching():
        result = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=new + "\n")
    assert result.code == 4, result
    assert platform.repo.snapshot() == before
    assert_promises_held(recorder, [result], isolated_home)


ECHOING_SOPS = """#!/bin/sh
# sops, except that reading the new value back from the rotation's staged copy fails and
# prints what it read to stderr
case "$(pwd)" in
  */stage-*) for arg in "$@"; do
    if [ "$arg" = "--extract" ]; then echo "sops: could not read back $({real} "$@")" >&2; exit 1; fi
  done;;
esac
exec {real} "$@"
"""


def test_a_failed_read_back_names_the_step_and_not_the_new_value(
    platform: Platform, slack: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check after `sops set` reads the new value back; if sops fails and its stderr holds
    that value, the one-line error shows [redacted] in its place."""
    _stand_in(tmp_path, monkeypatch, "sops", ECHOING_SOPS)
    new = slack_bot()
    slack.valid.add(new)
    before = platform.repo.snapshot()
    result = platform.repo.ops("rotate", "slack-bot-token", "--stdin", stdin=new + "\n")
    assert result.code == 4, result
    assert "sops decrypt secrets/secrets.yaml failed" in result.err and "could not read back [redacted]" in result.err, result
    assert new not in result.out + result.err
    assert platform.repo.snapshot() == before


FAILING_AGE = """#!/bin/sh
# age, except that encrypting fails after the value was read from stdin
case "$1" in --version) exec {real} "$@";; esac
cat > /dev/null; echo "age: injected failure" >&2; exit 1
"""


def test_failed_share_leaves_no_temp_file_and_shows_no_value(
    platform: Platform, recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """The value was decrypted and handed to age, which failed: nothing stays behind."""
    _stand_in(tmp_path, monkeypatch, "age", FAILING_AGE)
    recorder.secrets += [v for v in platform.tokens.values() if len(v) >= 12]
    with recorder.watching():
        result = platform.repo.ops("share", "slack-bot-token", "--to", "dan")
    assert result.code == 4, result
    # the policy's default file holds the key, so share needs no git to find it
    assert_promises_held(recorder, [result], isolated_home, ran=frozenset({"sops", "age"}))


# -- the keyring identity --------------------------------------------------------------------------


def test_keyring_identity_reaches_only_sops_is_never_written_and_not_kept(
    platform: Platform, recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    repo = platform.repo
    store = tmp_path / "keyring.json"
    identity = repo.operator.identity
    store.write_text(json.dumps({"opssecrets": {"age-identity": identity}}))
    store.chmod(0o600)
    monkeypatch.delenv("SOPS_AGE_KEY")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring_backends.FileKeyring")
    monkeypatch.setenv("OPSSECRETS_TEST_KEYRING", str(store))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    recorder.secrets += [v for v in platform.tokens.values() if len(v) >= 12]
    gc.collect()
    baseline = {id(obj) for obj in gc.get_objects() if isinstance(obj, (dict, list, tuple, set)) and _holds(obj, identity)}
    with recorder.watching():
        results = [repo.ops("check", "--known", "--all"), repo.ops("share", "slack-bot-token", "--to", "dan"), repo.ops("doctor")]
    assert results[1].code == 0, results[1]
    assert "keyring" in results[2].out + results[2].err
    assert_promises_held(recorder, results, isolated_home)
    sops_children = [c for c in recorder.children if c.program == "sops" and "--version" not in c.argv]
    assert sops_children and all(c.env.get("SOPS_AGE_KEY") == identity for c in sops_children)
    # never written: no file anywhere under the test's folders holds it but the keyring store
    for path in [*tmp_path.rglob("*"), *repo.root.rglob("*")]:
        if path.is_file() and path != store and "record" not in path.parts:
            assert identity.encode() not in path.read_bytes(), path
    # not kept: once the command returned, no live container object holds the identity
    gc.collect()
    recorded = {id(c.env) for c in recorder.children} | {id(recorder.secrets)}
    holders = [
        type(obj).__name__
        for obj in gc.get_objects()
        if isinstance(obj, (dict, list, tuple, set)) and id(obj) not in baseline | recorded and _holds(obj, identity)
    ]
    assert holders == [], holders


def _holds(obj: dict[Any, Any] | list[Any] | tuple[Any, ...] | set[Any], value: str) -> bool:
    try:
        items = obj.values() if isinstance(obj, dict) else obj
        return any(isinstance(item, str) and item == value for item in items)
    except Exception:
        return False


# -- a CI runner needs no identity ---------------------------------------------------------------


def test_ci_check_decrypts_nothing_and_hands_the_identity_to_no_child(platform: Platform, recorder: Recorder) -> None:
    """`check --all --base REF` (what CI runs) starts no sops or age and loads no keyring."""
    repo = platform.repo
    with recorder.watching():
        result = repo.ops("check", "--all", "--base", "HEAD")
    assert result.code == 0, result
    children = recorder.children + wrapped_children(recorder)
    assert {c.program for c in children} == {"git"}
    assert all("SOPS_AGE_KEY" not in c.env for c in children)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from opssecrets.cli import main; code = main(['check', '--all', '--base', 'HEAD']); "
         "print(code, 'keyring' in sys.modules)"],
        cwd=repo.root, env=cli_env(), capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert probe.stdout.split() == ["0", "False"], probe


SLOW_SOPS = """#!/bin/sh
# sops, except that `set` waits (long enough to be interrupted) after the value arrived
for arg in "$@"; do
  if [ "$arg" = "set" ]; then cat > /dev/null; touch "$OPSSECRETS_TEST_RECORD/in-set"; sleep 30; exit 1; fi
done
exec {real} "$@"
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_rotation_removes_its_temp_files(
    platform: Platform, slack: FakeService, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """SIGTERM (a cancelled CI job) and Ctrl-C in the middle of `sops set`: the staged copy
    is removed, the file is unchanged, nothing is left in TMPDIR."""
    repo = platform.repo
    (tmp_path / "slow").mkdir()
    wrapper = tmp_path / "slow" / "sops"
    wrapper.write_text(SLOW_SOPS.format(real=find_sops().path))
    wrapper.chmod(0o755)
    record, tmpdir = tmp_path / "record", tmp_path / "tmpdir"
    record.mkdir()
    tmpdir.mkdir()
    new = slack_bot()
    slack.valid.add(new)
    before = repo.snapshot()
    env = cli_env({"OPSSECRETS_SOPS": str(wrapper), "OPSSECRETS_TEST_RECORD": str(record), "TMPDIR": str(tmpdir)})
    argv = cli_argv("rotate", "slack-bot-token", "--stdin", "--no-verify", root=repo.root)
    # Popen, not run_cli: the test watches the process while it runs
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    proc.stdin.write((new + "\n").encode())
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while not (record / "in-set").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "rotate never reached sops set"
        time.sleep(0.05)
    state = repo.root / ".git" / "opssecrets"
    assert list(state.glob("stage-*/secrets/*.yaml")), "the staged copy exists while sops runs"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == code, err
    assert new.encode() not in out + err
    assert not list(state.glob("**/rotate-*")) and not list(state.glob("**/stage-*"))
    assert list(tmpdir.iterdir()) == []
    assert repo.snapshot() == before

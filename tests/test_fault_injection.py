"""Fault injection: SIGKILL at many points of every mutating command, sops failing, disk full.

Each command runs on a copy of one 30-file platform repository (see ``fault_support``) and
is killed with SIGKILL at deterministic points spread over its run: before, during and
after chosen sops calls (a sops wrapper on ``OPSSECRETS_SOPS`` kills its parent), before
each chosen ``os.replace`` (between files), when the ``.sops.yaml`` temp file is created
and when it is written but not renamed, before chosen child starts, and just before exit
(an audit hook in ``fault_launch.py``). After each kill every secret file must decrypt
with the operator's identity to exactly its old or its new content, with its old or its
new recipients, and ``.sops.yaml`` must be byte-identical to the old or the new text.
Then the same command runs again and must reach the uninterrupted run's end state.

Set ``OPSSECRETS_FAULT_REPORT=FILE`` to get the counts as JSON (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fault_support import (
    Outcome,
    Snapshot,
    World,
    build_world,
    data_key_rotations,
    decrypt,
    exposures,
    file_state,
    run_command,
    secret_relpaths,
    sops_updatekeys,
    tree_files,
    value_rotations,
)

pytestmark = [pytest.mark.faults]

KILLS_PER_COMMAND = 25
PARALLEL_RUNS = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # On a tmpfs when there is one: the hundreds of copies and fsyncs then cost no disk I/O.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="opssecrets-faults-", dir=shm))
    else:
        base = tmp_path_factory.mktemp("faults")
    try:
        yield build_world(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


_plain_cache: dict[str, bytes | None] = {}
_ids = itertools.count()


def plaintext(world: World, root: Path, rel: str) -> bytes | None:
    """The operator's decryption of a file, cached by ciphertext (copies decrypt once)."""
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    if digest not in _plain_cache:
        _plain_cache[digest] = decrypt(world, root, rel)
    return _plain_cache[digest]


def copy_repo(world: World, source: Path, name: str) -> Path:
    target = world.tmp / f"{name}-{next(_ids):04d}"
    shutil.copytree(source, target, symlinks=True)
    return target


@dataclass
class Scenario:
    """One command, the repository it starts from, and its uninterrupted end state."""

    name: str
    args: list[str]
    base: Path
    stdin: str | None = None
    removed_reader: str | None = None  # the key attribute of world.keys that must lose access
    rerun_done_message: str | None = None  # exit 2 text meaning "already done" on a re-run
    before: Snapshot | None = None
    after: Snapshot | None = None
    profile: Outcome | None = None


def scenarios(world: World) -> list[Scenario]:
    keys = world.keys
    out = [
        Scenario("add-engineer", ["add-engineer", "gina", "--age-key", keys.gina.recipient, "--admin"], world.base),
        Scenario("remove-engineer", ["remove-engineer", "eve"], world.base, removed_reader="eve", rerun_done_message="no recipient named"),
        Scenario("add-host --replace", ["add-host", "web1", "--ssh-host-key", keys.host_new, "--replace"], world.base),
        Scenario("revoke", ["revoke", "frank", "web"], world.base, removed_reader="frank", rerun_done_message="does not read project web"),
    ]
    # reencrypt: the config already names gina (as add-engineer's run left it) but no file has her yet
    drift = copy_repo(world, world.base, "base-drift")
    added = copy_repo(world, world.base, "base-added")
    assert run_command(world, added, out[0].args).code == 0
    shutil.copyfile(added / ".sops.yaml", drift / ".sops.yaml")
    out.append(Scenario("reencrypt", ["reencrypt"], drift))
    # rotate: eve was removed by hand (her key out of .sops.yaml, `sops updatekeys` on s00,
    # committed) without a data-key rotation, so the rotation replaces s00's data key first
    # (sops rotate), sets the value (sops set), reads it back (sops decrypt --extract), renames
    # the file into place and records the ledger
    scratch = copy_repo(world, world.base, "scratch")
    assert run_command(world, scratch, ["remove-engineer", "eve"]).code == 0
    removed = copy_repo(world, world.base, "base-removed")
    shutil.copyfile(scratch / ".sops.yaml", removed / ".sops.yaml")
    sops_updatekeys(world, removed, "secrets/s00.yaml")
    subprocess.run(["git", "commit", "-qam", "remove eve by hand"], cwd=removed, check=True, env=world.env())
    value = secrets.token_urlsafe(24)
    out.append(
        Scenario(
            "rotate",
            ["rotate", "matrix-registration-token", "--file", "secrets/s00.yaml", "--stdin", "--reason", "fault test"],
            removed,
            stdin=value + "\n",
            rerun_done_message="the same as the current one",
        )
    )
    return out


def kill_points(profile: Outcome, target: int) -> list[tuple[str, str]]:
    """(launcher kill point, sops fault) pairs spread over the run the profile recorded."""
    points: list[tuple[str, str]] = []
    calls = profile.sops_calls
    counts: dict[str, int] = {}
    for kind, n, _ in profile.events:
        counts[kind] = max(counts.get(kind, 0), n)
    # the .sops.yaml write: temp file about to be created; written and fsynced, not renamed
    for kind in ("config-tmp", "config-chmod"):
        if counts.get(kind):
            points.append((f"{kind}:1", ""))
    points.append(("exit:1", ""))
    # between files: before chosen renames (the first ones, the last ones: .sops.yaml, ledger)
    renames = counts.get("rename", 0)
    if renames:
        picks = {1, 2, renames, renames - 1, renames - 2}
        picks.update(range(1, renames + 1, max(1, renames // 5)))
        points += [(f"rename:{n}", "") for n in sorted(p for p in picks if 1 <= p <= renames)]
    # before children start (git, sops' version check, the first sops calls)
    points += [(f"popen:{n}", "") for n in range(1, min(counts.get("popen", 0), 3) + 1)]
    # inside sops, the rest: before / during / after calls spread over the run (the first,
    # the last, some between), parent killed alone or with its sops
    delays = ("0.005", "0.01", "0.02", "0.04", "0.07", "0.12")
    sops_modes = ["kill-before", "kill-after"] + [f"{how}-during:{d}" for d in delays for how in ("kill", "killall")]
    chosen = sorted({0, len(calls) - 1, *range(0, len(calls), max(1, len(calls) // 5))}) if calls else []
    room = max(0, target - len(points))
    for i in range(room):
        call = chosen[i % len(chosen)] if chosen else None
        if call is None:
            break
        mode = sops_modes[(i // len(chosen) + i) % len(sops_modes)] if len(chosen) > 1 else sops_modes[i % len(sops_modes)]
        points.append(("", f"{call + 1}:{mode}"))
    return list(dict.fromkeys(points))


@dataclass
class Tally:
    kills: int = 0
    files_checked: int = 0
    failures: list[str] = field(default_factory=list)
    rerun_exit2: int = 0
    seconds: float = 0.0
    landed: dict[str, int] = field(default_factory=dict)  # what the kills left, by kind
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)


def check_after_kill(world: World, sc: Scenario, root: Path, label: str, tally: Tally) -> None:
    assert sc.before is not None and sc.after is not None
    config = (root / ".sops.yaml").read_bytes()
    if config not in (sc.before.config, sc.after.config):
        tally.fail(f"{label}: .sops.yaml is neither the old nor the new text")
    for rel in secret_relpaths(root):
        with tally.lock:
            tally.files_checked += 1
        old, new = sc.before.files[rel], sc.after.files[rel]
        raw = (root / rel).read_bytes()
        if raw == old.raw:
            continue
        try:
            state = file_state(root / rel)
        except Exception as exc:
            tally.fail(f"{label}: {rel} is not a readable sops file ({exc.__class__.__name__})")
            continue
        if state.recipients not in (old.recipients, new.recipients):
            tally.fail(f"{label}: {rel} has recipients that are neither old nor new")
        plain = plaintext(world, root, rel)
        if plain not in (sc.before.plaintext[rel], sc.after.plaintext[rel]):
            tally.fail(f"{label}: {rel} does not decrypt to its old or its new content")


def check_converged(world: World, sc: Scenario, root: Path, label: str, tally: Tally) -> None:
    assert sc.before is not None and sc.after is not None
    if (root / ".sops.yaml").read_bytes() != sc.after.config:
        tally.fail(f"{label}: after the re-run .sops.yaml differs from the uninterrupted run's")
    for rel in secret_relpaths(root):
        with tally.lock:
            tally.files_checked += 1
        state = file_state(root / rel)
        want = sc.after.files[rel]
        if state.recipients != want.recipients:
            tally.fail(f"{label}: after the re-run {rel} has other recipients than the uninterrupted run's")
        if plaintext(world, root, rel) != sc.after.plaintext[rel]:
            tally.fail(f"{label}: after the re-run {rel} does not decrypt to the uninterrupted run's content")
        rotated = want.values != sc.before.files[rel].values
        if rotated and state.values == sc.before.files[rel].values:
            tally.fail(f"{label}: after the re-run {rel} still has its old data key")
    if sc.removed_reader is not None:
        reader = getattr(world.keys, sc.removed_reader)
        for rel in secret_relpaths(root):
            if reader.recipient in file_state(root / rel).recipients:
                tally.fail(f"{label}: {sc.removed_reader} is still a recipient of {rel}")
        for rel in (secret_relpaths(root)[0], secret_relpaths(root)[-1]):
            if decrypt(world, root, rel, reader) is not None:
                tally.fail(f"{label}: {sc.removed_reader} can still decrypt {rel}")
    # the ledger may be missing (or lack data-key rotations) after a kill: see check_ledger
    tree = [p for p in tree_files(root) if p != LEDGER]
    if tree != [p for p in sc.after.tree if p != LEDGER]:
        extra = sorted(set(tree) ^ set(sc.after.tree) - {LEDGER})
        tally.fail(f"{label}: after the re-run the files differ from the uninterrupted run's: {extra}")
    check_ledger(sc, root, label, tally)
    stale = [p.name for p in (root / ".git" / "opssecrets").glob("**/*") if p.name.startswith(("stage-", "rotate-"))]
    if stale:
        tally.fail(f"{label}: staging folders left behind: {stale}")


LEDGER = ".opssecrets/ledger.json"


def check_ledger(sc: Scenario, root: Path, label: str, tally: Tally) -> None:
    """Exposures are recorded before any file changes, so after a kill and a re-run they are
    exactly the uninterrupted run's. A data-key rotation is recorded after the files are in
    place, so a kill in between can leave one unrecorded (a later ``rotate`` then replaces
    that data key once more: the safe direction); it must never be recorded when the
    uninterrupted run would not have, and a rotation of a value never half-recorded."""
    assert sc.after is not None
    path = root / LEDGER
    ledger = json.loads(path.read_text()) if path.exists() else None
    if exposures(ledger) != exposures(sc.after.ledger):
        tally.fail(f"{label}: after the re-run the ledger's exposures differ from the uninterrupted run's")
    mine, theirs = data_key_rotations(ledger), data_key_rotations(sc.after.ledger)
    if not mine <= theirs:
        tally.fail(f"{label}: the ledger records data-key rotations the uninterrupted run does not: {sorted(mine - theirs)}")
    if value_rotations(ledger) != value_rotations(sc.after.ledger):
        tally.fail(f"{label}: the ledger's value rotations differ from the uninterrupted run's")


def one_kill(world: World, sc: Scenario, kill_at: str, sops_fault: str, tally: Tally) -> None:
    label = f"{sc.name} [{kill_at or 'sops ' + sops_fault}]"
    root = copy_repo(world, sc.base, "kill")
    try:
        killed = run_command(world, root, sc.args, kill_at=kill_at, sops_fault=sops_fault, stdin=sc.stdin)
        if killed.code != -9:
            tally.fail(f"{label}: the run was not killed (exit {killed.code}): {killed.err.strip()[-300:]}")
            return
        assert sc.before is not None and sc.after is not None
        changed = sum((root / rel).read_bytes() != sc.before.files[rel].raw for rel in secret_relpaths(root))
        if (root / ".sops.yaml").read_bytes() == sc.after.config and sc.after.config != sc.before.config:
            landed = "4. .sops.yaml written"
        elif changed == 0:
            landed = "1. no file replaced yet"
        elif changed < sum(f.raw != sc.before.files[r].raw for r, f in sc.after.files.items()):
            landed = "2. some files replaced"
        else:
            landed = "3. every file replaced, .sops.yaml not (yet) written"
        with tally.lock:
            tally.kills += 1
            tally.landed[landed] = tally.landed.get(landed, 0) + 1
        check_after_kill(world, sc, root, label, tally)
        again = run_command(world, root, sc.args, stdin=sc.stdin)
        # exit 2 "already done" counts when the job was complete: check_converged proves it
        if again.code == 2 and sc.rerun_done_message and sc.rerun_done_message in again.err:
            with tally.lock:
                tally.rerun_exit2 += 1
        elif again.code != 0:
            tally.fail(f"{label}: the re-run failed (exit {again.code}): {again.err.strip()[-300:]}")
        check_converged(world, sc, root, label, tally)
    finally:
        shutil.rmtree(root, ignore_errors=True)


REPORT: dict[str, dict[str, object]] = {}


def _write_report() -> None:
    target = os.environ.get("OPSSECRETS_FAULT_REPORT")
    if target:
        Path(target).write_text(json.dumps(REPORT, indent=2) + "\n")


def prepare(world: World, sc: Scenario) -> None:
    sc.before = Snapshot.take(world, sc.base)
    ref = copy_repo(world, sc.base, "ref")
    sc.profile = run_command(world, ref, sc.args, stdin=sc.stdin, record_events=True)
    assert sc.profile.code == 0, sc.profile.err
    sc.after = Snapshot.take(world, ref)
    assert all(p is not None for p in sc.after.plaintext.values())


@pytest.fixture(scope="module")
def prepared(world: World) -> dict[str, Scenario]:
    out = {}
    for sc in scenarios(world):
        prepare(world, sc)
        out[sc.name] = sc
    return out


COMMAND_NAMES = ["add-engineer", "remove-engineer", "add-host --replace", "revoke", "reencrypt", "rotate"]


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_sigkill_anywhere_leaves_old_or_new_and_a_rerun_converges(world: World, prepared: dict[str, Scenario], name: str) -> None:
    sc = prepared[name]
    assert sc.profile is not None
    points = kill_points(sc.profile, KILLS_PER_COMMAND)
    assert len(points) >= 25, points
    tally = Tally()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        list(pool.map(lambda p: one_kill(world, sc, p[0], p[1], tally), points))
    tally.seconds = time.perf_counter() - start
    REPORT[name] = {
        "kills": tally.kills,
        "points": len(points),
        "sops_calls_in_a_run": len(sc.profile.sops_calls),
        "files_checked": tally.files_checked,
        "rerun_exit_2_already_done": tally.rerun_exit2,
        "failures": len(tally.failures),
        "seconds": round(tally.seconds, 1),
        "state_after_kill": dict(sorted(tally.landed.items())),
    }
    _write_report()
    print(f"\nfaults {name}: {REPORT[name]}")
    assert tally.failures == [], "\n".join(tally.failures)
    assert tally.kills == len(points)


# --- sops failing mid-run ------------------------------------------------------------------------

SOPS_FAILURES = [
    # (command, wrapper fault, exit code, words the error line must hold)
    # a removal rotates first (dropping the key), 30 files here; the files then match their
    # rule, so no updatekeys runs
    ("remove-engineer", "1:fail:1", 4, "sops rotate"),
    ("remove-engineer", "2:fail:1", 4, "sops rotate"),
    ("remove-engineer", "30:fail:1", 4, "sops rotate"),
    ("add-engineer", "1:fail:1", 4, "sops updatekeys"),
    ("remove-engineer", "16:selfkill-during:0.005", 4, "sops rotate"),
    ("remove-engineer", "1:fail:128", 3, "no identity here can decrypt"),
    ("rotate", "2:fail:1", 4, "sops rotate"),
    ("rotate", "3:fail-after:1", 4, "sops set"),
    ("rotate", "4:selfkill-during:0.001", 4, "sops decrypt"),
]


def one_sops_failure(world: World, sc: Scenario, fault: str, code: int, words: str, tally: Tally) -> None:
    assert sc.before is not None
    label = f"{sc.name} [sops {fault}]"
    root = copy_repo(world, sc.base, "sopsfail")
    try:
        failed = run_command(world, root, sc.args, sops_fault=fault, stdin=sc.stdin)
        lines = [line for line in failed.err.splitlines() if line.startswith("opssecrets: error:")]
        if failed.code != code or len(lines) != 1 or words not in lines[0] or "Traceback" in failed.err:
            tally.fail(f"{label}: wanted exit {code} and one error line with {words!r}, got {failed.code}: {failed.err.strip()[-400:]}")
        with tally.lock:
            tally.kills += 1
        # nothing changed, the ledger included (exposures written first are put back on failure)
        if (root / ".sops.yaml").read_bytes() != sc.before.config:
            tally.fail(f"{label}: .sops.yaml changed")
        for rel in secret_relpaths(root):
            with tally.lock:
                tally.files_checked += 1
            if (root / rel).read_bytes() != sc.before.files[rel].raw:
                tally.fail(f"{label}: {rel} changed although sops failed")
        assert sc.after is not None
        ledger_path = root / ".opssecrets" / "ledger.json"
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else None
        if exposures(ledger) != exposures(sc.before.ledger):
            tally.fail(f"{label}: the ledger records exposures for a removal that failed")
        if not exposures(ledger) <= exposures(sc.before.ledger) | exposures(sc.after.ledger):
            tally.fail(f"{label}: the ledger holds exposures the uninterrupted run does not")
        again = run_command(world, root, sc.args, stdin=sc.stdin)
        if again.code != 0:
            tally.fail(f"{label}: the re-run failed (exit {again.code}): {again.err.strip()[-300:]}")
        check_converged(world, sc, root, label, tally)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_sops_failing_or_killed_mid_run_changes_nothing_and_says_so(world: World, prepared: dict[str, Scenario]) -> None:
    tally = Tally()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        list(pool.map(lambda case: one_sops_failure(world, prepared[case[0]], case[1], case[2], case[3], tally), SOPS_FAILURES))
    REPORT["sops failing (exit non-zero, killed)"] = {
        "kills": tally.kills,
        "files_checked": tally.files_checked,
        "failures": len(tally.failures),
        "seconds": round(time.perf_counter() - start, 1),
    }
    _write_report()
    assert tally.failures == [], "\n".join(tally.failures)


# --- disk full ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["add-engineer", "remove-engineer"])
def test_disk_full_while_writing_sops_yaml(world: World, prepared: dict[str, Scenario], name: str) -> None:
    """RLIMIT_FSIZE drops to 4 KiB the moment the .sops.yaml temp file is opened (13 KiB to
    write): the write fails with EFBIG, as on a full disk, after every secret file was
    replaced. One clear line, exit 3, .sops.yaml byte-identical, no temp file left, and
    running the command again finishes the job."""
    sc = prepared[name]
    assert sc.before is not None and sc.after is not None
    root = copy_repo(world, sc.base, "diskfull")
    env_limit = "config-tmp:1:4096"
    out = run_command_with_fsize(world, root, sc.args, env_limit)
    assert out.code == 3, out.err
    lines = out.err.strip().splitlines()
    assert lines[-1].startswith("opssecrets: error: writing .sops.yaml failed: File too large (disk full or a file-size limit)"), out.err
    assert "the secret files are already re-encrypted and .sops.yaml is unchanged" in lines[-1]
    assert "Traceback" not in out.err
    assert (root / ".sops.yaml").read_bytes() == sc.before.config
    assert not list(root.glob("..sops.yaml.*")), "the temp file of the failed write is left"
    tally = Tally()
    check_after_kill(world, sc, root, f"{name} disk full", tally)
    assert tally.failures == []
    again = run_command(world, root, sc.args)
    assert again.code == 0, again.err
    check_converged(world, sc, root, f"{name} disk full, re-run", tally)
    assert tally.failures == []


def test_disk_full_from_the_start_changes_nothing(world: World, prepared: dict[str, Scenario]) -> None:
    """With a 4 KiB file-size limit from the start, staging .sops.yaml fails before any sops
    call: exit 3, one line, every file byte-identical."""
    sc = prepared["add-engineer"]
    assert sc.before is not None
    root = copy_repo(world, sc.base, "diskfull0")
    before = {rel: (root / rel).read_bytes() for rel in tree_files(root)}
    out = run_command_with_fsize(world, root, sc.args, "popen:1:4096")
    assert out.code == 3, out.err
    assert out.err.strip().splitlines()[-1].startswith("opssecrets: error: staging the re-encrypted files failed: File too large"), out.err
    assert "Traceback" not in out.err and out.sops_calls == []
    assert {rel: (root / rel).read_bytes() for rel in tree_files(root)} == before
    assert not list((root / ".git" / "opssecrets").glob("stage-*"))


def test_disk_full_in_rotate_staging_changes_nothing(world: World, prepared: dict[str, Scenario]) -> None:
    """rotate's staged copy cannot be written (limit 100 bytes after the first child): rotate
    stages in the transaction's folder, so it says what the recipient commands say; one
    line, exit 3, nothing changed, no staging folder left."""
    sc = prepared["rotate"]
    root = copy_repo(world, sc.base, "diskfull-rotate")
    before = {rel: (root / rel).read_bytes() for rel in tree_files(root)}
    out = run_command_with_fsize(world, root, sc.args, "popen:1:100", stdin=sc.stdin)
    assert out.code == 3, out.err
    assert out.err.strip().splitlines() == [
        "opssecrets: error: staging the re-encrypted files failed: File too large (disk full or a file-size limit); "
        ".sops.yaml is unchanged and each secret file is either unchanged or already re-encrypted. "
        "Free some space and run the same command again"
    ]
    assert {rel: (root / rel).read_bytes() for rel in tree_files(root)} == before
    assert not list((root / ".git" / "opssecrets").glob("stage-*"))


def test_disk_full_anywhere_else_is_one_line_not_a_traceback(world: World, prepared: dict[str, Scenario]) -> None:
    """remove-engineer's first ledger write (the exposures, before any file) cannot be written
    (limit 100 bytes from the last child before it): the CLI's last resort turns
    ENOSPC/EFBIG/EDQUOT into one line and exit 3; nothing changed."""
    sc = prepared["remove-engineer"]
    assert sc.profile is not None
    first_rename = next(i for i, (kind, _, _) in enumerate(sc.profile.events) if kind == "rename")
    assert sc.profile.events[first_rename][2] == "ledger.json"
    popen = max(n for kind, n, _ in sc.profile.events[:first_rename] if kind == "popen")
    root = copy_repo(world, sc.base, "diskfull-ledger")
    before = {rel: (root / rel).read_bytes() for rel in tree_files(root)}
    out = run_command_with_fsize(world, root, sc.args, f"popen:{popen}:100")
    assert out.code == 3, out.err
    assert out.err.strip().splitlines() == [
        "opssecrets: error: writing a file failed: File too large (disk full or a file-size limit); a change that stopped "
        "half-way is finished by running it again. Free some space and run the same command again"
    ]
    assert {rel: (root / rel).read_bytes() for rel in tree_files(root)} == before


def run_command_with_fsize(world: World, root: Path, args: list[str], fsize_at: str, stdin: str | None = None) -> Outcome:
    return run_command(world, root, args, stdin=stdin, extra_env={"OPSSECRETS_TEST_FSIZE_AT": fsize_at})


# --- two runs at once, and what a killed run leaves -----------------------------------------------


def test_a_second_run_is_refused_while_one_is_changing_the_repository(world: World, prepared: dict[str, Scenario]) -> None:
    """remove-engineer is held inside its first sops call (the wrapper waits for a file);
    meanwhile add-engineer, reencrypt and rotate are refused with exit 3 naming its pid, and
    change nothing; released, the first run finishes with the uninterrupted end state."""
    sc = prepared["remove-engineer"]
    root = copy_repo(world, sc.base, "concurrent")
    go = world.tmp / f"go-{next(_ids)}"
    before = {rel: (root / rel).read_bytes() for rel in tree_files(root)}
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(run_command, world, root, sc.args, sops_fault=f"1:wait-for:{go}")
        state = root / ".git" / "opssecrets"
        deadline = time.monotonic() + 30
        while not list(state.glob("stage-*/secrets")) and time.monotonic() < deadline:
            time.sleep(0.02)
        holder = (state / "lock").read_text().strip()
        assert holder.isdigit()
        try:
            for args, stdin in (
                (prepared["add-engineer"].args, None),
                (["reencrypt"], None),
                (prepared["rotate"].args, prepared["rotate"].stdin),
            ):
                second = run_command(world, root, args, stdin=stdin, count_sops=True)
                assert second.code == 3, (args, second.err)
                assert f"another opssecrets run (pid {holder}) is changing {root}" in second.err
                assert len(second.err.strip().splitlines()) == 1
                assert set(second.sops_calls) <= {"decrypt"}  # rotate reads the current value first
            # nothing changed yet: the first run is still in its first sops call (the ledger
            # already holds its exposures, recorded first by design)
            now = {rel: (root / rel).read_bytes() for rel in tree_files(root)}
            assert {k: v for k, v in now.items() if not k.startswith(".opssecrets/")} == before
        finally:
            go.touch()
        assert first.result().code == 0
    tally = Tally()
    check_converged(world, sc, root, "concurrent", tally)
    assert tally.failures == []


def test_a_killed_run_leaves_no_stale_lock_and_the_next_run_clears_its_leftovers(world: World, prepared: dict[str, Scenario]) -> None:
    """flock dies with its holder, so the lock file naming a dead pid blocks nobody; the next
    run removes the killed run's staging folder and the temp file of its .sops.yaml write."""
    sc = prepared["add-engineer"]
    root = copy_repo(world, sc.base, "stale")
    state = root / ".git" / "opssecrets"
    killed = run_command(world, root, sc.args, sops_fault="1:kill-during:0.01")
    assert killed.code == -9
    dead = int((state / "lock").read_text().strip())
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    assert list(state.glob("stage-*")), "the killed run's staging folder should be there"
    # a second killed run, this time while writing .sops.yaml: its temp file stays behind
    assert run_command(world, root, sc.args, kill_at="config-chmod:1").code == -9
    assert len(list(root.glob("..sops.yaml.*.tmp"))) == 1
    again = run_command(world, root, sc.args)
    assert again.code == 0, again.err
    assert not list(state.glob("stage-*")) and not list(root.glob("..sops.yaml.*"))
    tally = Tally()
    check_converged(world, sc, root, "stale", tally)
    assert tally.failures == []


def _rotated_file_rename(sc: Scenario) -> int:
    """Which rename (counted from 1) puts rotate's new secrets/s00.yaml in place."""
    assert sc.profile is not None
    renames = [detail for kind, _, detail in sc.profile.events if kind == "rename"]
    return renames.index("s00.yaml") + 1


def test_rotate_killed_after_writing_the_file_is_recorded_by_the_rerun(world: World, prepared: dict[str, Scenario]) -> None:
    """Killed between renaming the file and saving the ledger, the same rotate run again
    finds the value already there: it records the rotation (exit 0) instead of refusing
    "the same as the current one"."""
    sc = prepared["rotate"]
    assert sc.after is not None
    file_rename = _rotated_file_rename(sc)
    root = copy_repo(world, sc.base, "rotate-pending")
    killed = run_command(world, root, sc.args, kill_at=f"rename:{file_rename + 1}", stdin=sc.stdin)
    assert killed.code == -9
    assert plaintext(world, root, "secrets/s00.yaml") == sc.after.plaintext["secrets/s00.yaml"]
    assert not (root / LEDGER).exists(), "the killed run was to save the ledger after the kill point"
    again = run_command(world, root, sc.args, stdin=sc.stdin)
    assert again.code == 0, again.err
    assert "an interrupted run had written this value; recorded it now" in again.out
    record = json.loads((root / ".opssecrets" / "ledger.json").read_text())["files"]["secrets/s00.yaml"]
    assert record["keys"]["matrix-registration-token"]["rotated_at"]
    assert record["keys"]["matrix-registration-token"]["reason"] == "fault test"
    assert record["data_key_rotated_at"]
    assert not (root / ".git" / "opssecrets" / "rotation-pending.json").exists()
    # the same value once more is refused again: the pending note was used up
    third = run_command(world, root, sc.args, stdin=sc.stdin)
    assert third.code == 2 and "the same as the current one" in third.err


def test_ctrl_c_during_the_renames_says_what_was_replaced_and_a_rerun_finishes(world: World, prepared: dict[str, Scenario]) -> None:
    """A real SIGINT just before remove-engineer's 9th file rename: 8 of its 30 files are new.
    The message says so, names files not yet replaced, says .sops.yaml is unchanged and that
    re-running finishes the job (never "nothing was changed"); the re-run converges."""
    sc = prepared["remove-engineer"]
    assert sc.profile is not None and sc.before is not None
    file_renames = [n for kind, n, detail in sc.profile.events if kind == "rename" and detail.endswith(".yaml") and detail != ".sops.yaml"]
    assert len(file_renames) == 30
    root = copy_repo(world, sc.base, "sigint")
    out = run_command(world, root, sc.args, kill_at=f"rename:{file_renames[8]}:SIGINT")
    assert out.code == 130, out.err
    rels = secret_relpaths(root)
    replaced = [rel for rel in rels if (root / rel).read_bytes() != sc.before.files[rel].raw]
    assert len(replaced) == 8
    not_yet = [rel for rel in rels if rel not in replaced]
    assert out.err.strip().splitlines()[-1] == (
        f"opssecrets: interrupted: 8 of 30 secret files were replaced (not yet: {', '.join(not_yet[:5])} and 17 more); "
        ".sops.yaml is unchanged. Each file is whole, old or new; run the same command again to finish the job"
    )
    assert "nothing was changed" not in out.err
    assert (root / ".sops.yaml").read_bytes() == sc.before.config
    tally = Tally()
    check_after_kill(world, sc, root, "sigint", tally)
    again = run_command(world, root, sc.args)
    assert again.code == 0, again.err
    check_converged(world, sc, root, "sigint", tally)
    assert tally.failures == []


def test_ctrl_c_after_rotate_wrote_the_file_says_so_and_a_rerun_records_it(world: World, prepared: dict[str, Scenario]) -> None:
    """A real SIGINT between renaming the rotated file and saving the ledger: the message says
    the value is in the file and the ledger may lack it (not "nothing was changed"); the
    same command run again records it."""
    sc = prepared["rotate"]
    assert sc.after is not None
    file_rename = _rotated_file_rename(sc)
    root = copy_repo(world, sc.base, "rotate-sigint")
    out = run_command(world, root, sc.args, kill_at=f"rename:{file_rename + 1}:SIGINT", stdin=sc.stdin)
    assert out.code == 130, out.err
    assert out.err.strip().splitlines()[-1] == (
        "opssecrets: interrupted: the new value of matrix-registration-token is already in secrets/s00.yaml, but the ledger "
        "may not have recorded it; run the same command again with the same value to record it"
    )
    assert plaintext(world, root, "secrets/s00.yaml") == sc.after.plaintext["secrets/s00.yaml"]
    again = run_command(world, root, sc.args, stdin=sc.stdin)
    assert again.code == 0, again.err
    assert "an interrupted run had written this value; recorded it now" in again.out
    record = json.loads((root / LEDGER).read_text())["files"]["secrets/s00.yaml"]
    assert record["keys"]["matrix-registration-token"]["reason"] == "fault test"

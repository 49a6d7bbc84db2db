"""All-or-nothing changes to ``.sops.yaml`` and the secret files it governs.

A change is planned as data (:class:`Plan`): the new config text, the files whose data
key must be re-wrapped for new recipients (``sops updatekeys``, many files per process),
and the files whose data key must be replaced (``sops rotate``, in parallel). It is applied
on copies in a staging folder on the same filesystem (ciphertext only, mode 0600); only
when every sops call succeeded are the copies renamed over the originals, one atomic
``os.replace`` each, files first and ``.sops.yaml`` last. A kill at any moment leaves each
file old or new, and running the same command again finishes the job: the command sees
the old config and plans the remaining files. A lock (``flock``, released by the kernel
when its holder dies, so a killed run never leaves a stale lock) stops two runs at once;
whoever takes it next removes what a killed run left: staging folders and the temp file of
an unfinished ``.sops.yaml`` write (see docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opssecrets.errors import EnvironmentProblem, Interrupted, OpsError, environment_fault
from opssecrets.paths import (
    CHANGE_LOCK,
    CONFIG_NAME,
    LEDGER_PATH,
    LEDGER_TEMP_PREFIX,
    PENDING_TEMP_PREFIX,
    ROTATE_STAGE_PREFIX,
    ROTATE_STAGING,
    STAGE_PREFIX,
)
from opssecrets.repo import Repo
from opssecrets.rules import matching_rule
from opssecrets.secretfile import drift, file_groups, rule_groups
from opssecrets.sopsconfig import SopsConfig, write_atomic


@contextmanager
def repo_lock(repo: Repo) -> Iterator[None]:
    """Hold the repository's change lock, or refuse at once if another run holds it."""
    state = repo.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise EnvironmentProblem(
            f"the state folder {state} cannot be created: a file is in the way; move it away and run this again"
        ) from None
    lock_path = state / CHANGE_LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise EnvironmentProblem(
                f"another opssecrets run (pid {holder}) is changing {repo.root}; wait for it to finish and run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _clear_stale_stages(repo)
        yield
    finally:
        os.close(fd)


def _clear_stale_stages(repo: Repo) -> None:
    """What a killed run leaves behind, removed under the lock (so no live run owns it):
    staging folders (ciphertext copies only) and the temp file of an unfinished
    ``.sops.yaml`` write (``write_atomic`` names it ``.<name>.<random>.tmp``), of a ledger
    save, or of a rotation's pending note."""
    state = repo.state_dir
    for stale in [*state.glob(f"{STAGE_PREFIX}*"), *state.glob(f"{ROTATE_STAGING}/{ROTATE_STAGE_PREFIX}*")]:
        shutil.rmtree(stale, ignore_errors=True)
    ledger_folder = (repo.root / LEDGER_PATH).parent
    temps = [
        *repo.root.glob(f".{repo.config_path.name}.*.tmp"),
        *ledger_folder.glob(f"{LEDGER_TEMP_PREFIX}*.tmp"),
        *state.glob(f"{PENDING_TEMP_PREFIX}*"),
    ]
    for leftover in temps:
        with contextlib.suppress(OSError):
            leftover.unlink()


@dataclass
class FileChange:
    relpath: str
    updatekeys: bool
    rotate: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the secret key names in the file
    # removed keys dropped from the file's own metadata by ``sops rotate --rm-age``: on a file
    # no rule covers, that is the only way to reach them (updatekeys needs a rule)
    drop: list[str] = field(default_factory=list)
    no_rule: bool = False
    type_args: tuple[str, ...] = ()  # sops flags for a file whose name does not say its format


@dataclass
class Plan:
    """What a command will change: config text, and per file, re-wrap and/or rotate."""

    before: SopsConfig | None
    after: SopsConfig | None
    files: list[FileChange]
    notes: list[str] = field(default_factory=list)

    @property
    def config_changed(self) -> bool:
        return self.after is not None and (self.before is None or self.after.text != self.before.text)

    @property
    def empty(self) -> bool:
        return not self.config_changed and not self.files


def plan_files(
    repo: Repo,
    before: SopsConfig,
    after: SopsConfig,
    removed_keys: Sequence[str] = (),
    only: Sequence[str] | None = None,
    include_unrelated_drift: bool = False,
) -> list[FileChange]:
    """The files a config change affects: whose rule's recipients changed (or that hold a
    removed key) and that do not already match the new rule. Files already in line cost
    nothing: no sops call is planned for them. A file no rule covers (encrypted by hand, or
    before a rule changed) is planned when its own metadata lists a removed key: that key is
    dropped from it and its data key rotated."""
    changes: list[FileChange] = []
    removed = set(removed_keys)
    for secret in repo.secret_files(list(only) if only is not None else None):
        rel = repo.relpath(secret.path)
        rule_after = matching_rule(after.rules, rel)
        rule_before = matching_rule(before.rules, rel)
        if rule_after is None:
            held = sorted(removed & secret.metadata.age_recipients)
            if held:
                changes.append(
                    FileChange(
                        relpath=rel,
                        updatekeys=False,
                        rotate=True,
                        removed=held,
                        keys=secret.key_paths(),
                        drop=held,
                        no_rule=True,
                        type_args=secret.sops_type_args,
                    )
                )
            continue
        # a removed key only counts where it loses access: it may still read other rules
        holds_removed = bool(removed & (secret.metadata.age_recipients - set(rule_after.age_recipients)))
        changed_rule = rule_before is None or rule_groups(rule_before) != rule_groups(rule_after)
        drifts = drift(rule_after, secret.metadata) is not None
        if not holds_removed and not (drifts and (changed_rule or include_unrelated_drift)):
            continue
        wanted = set(rule_after.age_recipients)
        have = set(secret.metadata.age_recipients)
        drop = removed & (have - wanted) if holds_removed else set()
        # after the rotation drops them, updatekeys is needed only if the file still differs
        # (and must not run when it does not: an operator who removed their own key can no
        # longer open the file)
        still_drifts = rule_groups(rule_after) != tuple(group - drop for group in file_groups(secret.metadata))
        changes.append(
            FileChange(
                relpath=rel,
                updatekeys=still_drifts,
                rotate=holds_removed,
                added=sorted(wanted - have),
                removed=sorted(have - wanted),
                keys=secret.key_paths(),
                drop=sorted(drop),
                type_args=secret.sops_type_args,
            )
        )
    return changes


def check_plugins(plan: Plan) -> None:
    """Exit 3 before anything changes when a file would be re-encrypted for an age plugin
    recipient whose ``age-plugin-NAME`` is not on PATH (sops would fail half-way)."""
    from opssecrets.plugins import require_plugins

    config = plan.after if plan.after is not None else plan.before
    if config is None:
        return
    pairs = []
    for change in plan.files:
        rule = matching_rule(config.rules, change.relpath)
        pairs += [(f"re-encrypting {change.relpath}", recipient) for recipient in (rule.age_recipients if rule else ())]
    require_plugins(pairs)


def apply(repo: Repo, plan: Plan, progress: Callable[[int, int, str], None] | None = None) -> None:
    """Apply ``plan`` all or nothing (see the module docstring)."""
    if plan.empty:
        return
    check_plugins(plan)
    state = repo.state_dir
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=state))
    os.chmod(stage, 0o700)
    renaming = False
    try:
        config = plan.after if plan.after is not None else plan.before
        assert config is not None
        stage_config = stage / CONFIG_NAME
        _write_private(stage_config, config.text.encode("utf-8"))
        for change in plan.files:
            source = repo.root / change.relpath
            target = stage / change.relpath
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(target, source.read_bytes())
        total = len(plan.files)
        # Rotate first, while the old recipients (the operator among them, even one removing
        # their own key) can still open the data key; the removed keys are dropped in the same
        # step, so the new data key is never wrapped for them. updatekeys then brings each file
        # in line with its rule.
        to_rotate = [c for c in plan.files if c.rotate]
        if to_rotate:
            _rotate_all(repo, to_rotate, stage, stage_config, progress)
        to_update = [c for c in plan.files if c.updatekeys]
        for type_args in sorted({c.type_args for c in to_update}):
            try:
                batch = [c.relpath for c in to_update if c.type_args == type_args]
                repo.sops.updatekeys(batch, cwd=stage, config=stage_config, type_args=type_args)
            except OpsError as exc:
                raise _unstaged(exc, stage) from None
        if progress:
            progress(len(to_update), total, "re-wrapping data keys")
        renaming = True  # from here on a Ctrl-C leaves some files new: say which (see _interrupted)
        for change in plan.files:
            staged = stage / change.relpath
            original = repo.root / change.relpath
            os.chmod(staged, original.stat().st_mode & 0o777)
            _fsync(staged)
            os.replace(staged, original)
        for folder in sorted({(repo.root / change.relpath).parent for change in plan.files}):
            _fsync(folder)  # the renames themselves survive a power loss
        if plan.config_changed:
            assert plan.after is not None
            try:
                write_atomic(repo.config_path, plan.after.text.encode("utf-8"), _mode_of(repo.config_path))
            except OSError as exc:
                problem = environment_fault(
                    exc,
                    f"writing {repo.config_path.name}",
                    f"the secret files are already re-encrypted and {repo.config_path.name} is unchanged",
                )
                raise (problem or exc) from None
    except KeyboardInterrupt:
        if renaming:
            raise _interrupted(repo, plan, stage) from None
        raise
    except OSError as exc:
        then = f"{repo.config_path.name} is unchanged and each secret file is either unchanged or already re-encrypted"
        raise (environment_fault(exc, "staging the re-encrypted files", then) or exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _interrupted(repo: Repo, plan: Plan, stage: Path) -> Interrupted:
    """What a Ctrl-C during the renames left, said exactly: a staged copy that is gone was
    renamed over its original (the check holds whichever instruction the signal landed on)."""
    done = [c.relpath for c in plan.files if not (stage / c.relpath).exists()]
    left = [c.relpath for c in plan.files if (stage / c.relpath).exists()]
    name = repo.config_path.name
    try:
        config_written = plan.after is not None and repo.config_path.read_text(encoding="utf-8") == plan.after.text
    except OSError:
        config_written = False
    config = f"{name} was written" if config_written else f"{name} is unchanged"
    if not plan.config_changed:
        config = f"{name} needed no change"
    if not left and (config_written or not plan.config_changed):
        return Interrupted(f"all {len(done)} secret files were replaced and {config}: the change is complete")
    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    not_yet = f" (not yet: {shown})" if left else ""
    return Interrupted(
        f"{len(done)} of {len(plan.files)} secret files were replaced{not_yet}; {config}. "
        "Each file is whole, old or new; run the same command again to finish the job"
    )


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte (a staged copy is never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _rotate_all(
    repo: Repo, changes: Sequence[FileChange], stage: Path, config: Path, progress: Callable[[int, int, str], None] | None
) -> None:
    done = 0
    errors: list[OpsError] = []

    def rotate_one(change: FileChange) -> None:
        try:
            repo.sops.rotate(change.relpath, cwd=stage, config=config, remove=change.drop, type_args=change.type_args)
        except OpsError as exc:
            errors.append(_unstaged(exc, stage))

    workers = max(1, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(rotate_one, changes):
            done += 1
            if progress:
                progress(done, len(changes), "rotating data keys")
    if errors:
        raise errors[0]


def _unstaged(exc: OpsError, stage: Path) -> OpsError:
    """Rewrite staging paths in an error back to repository-relative ones."""
    exc.message = exc.message.replace(str(stage) + os.sep, "")
    exc.args = (exc.message,)
    return exc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644

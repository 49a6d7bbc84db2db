"""All-or-nothing changes to ``.sops.yaml`` and the secret files it governs.

A change is planned as data (:class:`Plan`): the new config text, the files whose data
key must be re-wrapped for new recipients (``sops updatekeys``, many files per process),
the files whose data key must be replaced (``sops rotate``, in parallel), and the values to
set (a rotation's ``sops set``, read back). It is applied on copies in a staging folder on
the same filesystem (ciphertext only, mode 0600); only when every sops call succeeded (and
no original changed meanwhile) are the copies renamed over the originals, one atomic
rename each, files first and ``.sops.yaml`` last (``opssecrets/fsio.py`` does the writes). A kill at any moment leaves each
file old or new, and running the same command again finishes the job: the command sees
the old config and plans the remaining files. A lock (``flock``, released by the kernel
when its holder dies, so a killed run never leaves a stale lock) stops two runs at once;
whoever takes it next removes what a killed run left: staging folders and the temp file of
an unfinished ``.sops.yaml`` write (see docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opssecrets import fsio
from opssecrets.errors import BadInput, EnvironmentProblem, Interrupted, OpsError, environment_fault
from opssecrets.ledger import ledger_lock
from opssecrets.paths import CHANGE_LOCK, CONFIG_NAME, ROTATION_PENDING, STAGE_PREFIX
from opssecrets.repo import Repo
from opssecrets.rules import matching_rule
from opssecrets.secretfile import drift, file_groups, rule_groups
from opssecrets.sopsconfig import SopsConfig


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
    try:
        with fsio.locked(state / CHANGE_LOCK, wait=False):
            _clear_stale(repo)
            yield
    except fsio.LockHeld as held:
        raise EnvironmentProblem(
            f"another opssecrets run (pid {held.holder}) is changing {repo.root}; wait for it to finish and run this again"
        ) from None


def _clear_stale(repo: Repo) -> None:
    """What a killed run leaves behind, removed under the lock (so no live run owns it):
    staging folders (ciphertext copies only) and the temp files of an unfinished
    ``.sops.yaml`` write or rotation pending note. A ledger save's temp file is the ledger
    lock's to remove (``share`` saves the ledger without this lock): taking that lock for a
    moment removes it, so a run that never saves the ledger still leaves none behind."""
    fsio.remove_leftovers(
        writes=[repo.config_path, repo.state_dir / ROTATION_PENDING],
        folders=repo.state_dir.glob(f"{STAGE_PREFIX}*"),
    )
    with ledger_lock(repo.root):
        pass


@dataclass(frozen=True)
class NewValue:
    """A value ``sops set`` writes into the staged file (a rotation); kept out of any repr."""

    key: str
    value: str = field(repr=False)


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
    set_value: NewValue | None = None  # set after rotate/updatekeys, then read back


@dataclass
class Plan:
    """What a command will change: config text, and per file, re-wrap, rotate and/or set a
    value. ``before`` and ``after`` are both None for a change that leaves ``.sops.yaml``
    alone and does not need its rules (a rotation: sops reads the real one)."""

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
        if not (change.updatekeys or change.rotate):
            continue  # setting a value re-encrypts with the file's data key: no recipient is used
        rule = matching_rule(config.rules, change.relpath)
        pairs += [(f"re-encrypting {change.relpath}", recipient) for recipient in (rule.age_recipients if rule else ())]
    require_plugins(pairs)


def apply(
    repo: Repo,
    plan: Plan,
    progress: Callable[[int, int, str], None] | None = None,
    before_replace: Callable[[str, bytes], None] | None = None,
) -> None:
    """Apply ``plan`` all or nothing (see the module docstring). ``before_replace`` sees each
    file's path and new bytes just before it is renamed into place."""
    if plan.empty:
        return
    check_plugins(plan)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=repo.state_dir))
    os.chmod(stage, 0o700)
    renaming = False
    try:
        stage_config, originals = _stage(repo, plan, stage)
        _run_sops(repo, plan, stage, stage_config, progress)
        for change in plan.files:
            if (repo.root / change.relpath).read_bytes() != originals[change.relpath]:
                raise BadInput(f"{change.relpath} changed while this run worked on it; nothing was written, run it again")
        renaming = True  # from here on a Ctrl-C leaves some files new: say which (see _interrupted)
        _rename_in(repo, plan, stage, before_replace)
    except KeyboardInterrupt:
        if renaming:
            raise _interrupted(repo, plan, stage) from None
        raise
    except OSError as exc:
        then = f"{repo.config_path.name} is unchanged and each secret file is either unchanged or already re-encrypted"
        raise (environment_fault(exc, "staging the re-encrypted files", then) or exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage(repo: Repo, plan: Plan, stage: Path) -> tuple[Path, dict[str, bytes]]:
    """0600 copies of the new ``.sops.yaml`` (else the current one is used) and of every
    file in ``stage``; returns the config sops is to read and each file's original bytes."""
    config = plan.after if plan.after is not None else plan.before
    stage_config = stage / CONFIG_NAME
    if config is not None:
        fsio.create_private(stage_config, config.text.encode("utf-8"))
    else:
        stage_config = repo.config_path
    originals: dict[str, bytes] = {}
    for change in plan.files:
        target = stage / change.relpath
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        originals[change.relpath] = (repo.root / change.relpath).read_bytes()
        fsio.create_private(target, originals[change.relpath])
    return stage_config, originals


def _run_sops(
    repo: Repo, plan: Plan, stage: Path, stage_config: Path, progress: Callable[[int, int, str], None] | None
) -> None:
    """Every sops step on the staged copies. Rotate first, while the old recipients (the
    operator among them, even one removing their own key) can still open the data key; the
    removed keys are dropped in the same step, so the new data key is never wrapped for
    them. updatekeys then brings each file in line with its rule; a value is set last."""
    to_rotate = [c for c in plan.files if c.rotate]
    if to_rotate:
        _rotate_all(repo, to_rotate, stage, stage_config, progress)
    to_update = [c for c in plan.files if c.updatekeys]
    try:
        for type_args in sorted({c.type_args for c in to_update}):
            batch = [c.relpath for c in to_update if c.type_args == type_args]
            repo.sops.updatekeys(batch, cwd=stage, config=stage_config, type_args=type_args)
        if progress:
            progress(len(to_update), len(plan.files), "re-wrapping data keys")
        for change in plan.files:
            if change.set_value is not None:
                new = change.set_value
                repo.sops.set_value(change.relpath, new.key, new.value, cwd=stage, config=stage_config, name=change.relpath)
    except OpsError as exc:
        raise _unstaged(exc, stage) from None


def _rename_in(repo: Repo, plan: Plan, stage: Path, before_replace: Callable[[str, bytes], None] | None) -> None:
    """Each staged file over its original (mode kept), each folder fsynced once, then
    ``.sops.yaml`` last."""
    for change in plan.files:
        staged = stage / change.relpath
        original = repo.root / change.relpath
        if before_replace is not None:
            before_replace(change.relpath, staged.read_bytes())
        fsio.move_into_place(staged, original, original.stat().st_mode & 0o777)
    for folder in sorted({(repo.root / change.relpath).parent for change in plan.files}):
        fsio.fsync_folder(folder)  # the renames themselves survive a power loss
    if plan.config_changed:
        assert plan.after is not None
        try:
            fsio.write_atomic(repo.config_path, plan.after.text.encode("utf-8"), _mode_of(repo.config_path))
        except OSError as exc:
            problem = environment_fault(
                exc,
                f"writing {repo.config_path.name}",
                f"the secret files are already re-encrypted and {repo.config_path.name} is unchanged",
            )
            raise (problem or exc) from None


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


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644

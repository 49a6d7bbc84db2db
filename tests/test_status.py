"""`opssecrets status`: every key of every encrypted file, its age against its kind's max age."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OpsRepo
from rotation_support import Platform, make_platform

from opssecrets.ledger import RotationLedger, mark_exposed

SECRETS = "secrets/secrets.yaml"


@pytest.fixture
def platform(repo: OpsRepo) -> Platform:
    return make_platform(repo)


def _days_ago(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=days, hours=1)


def _record(platform: Platform, key: str, days: int, rel: str = SECRETS) -> None:
    ledger = RotationLedger.load(platform.root)
    ledger.record_rotation(rel, key, when=_days_ago(days), by="dan", reason="test")
    ledger.save()


def _json(platform: Platform, *args: str) -> tuple[int, list[dict[str, object]]]:
    r = platform.repo.ops("status", "--json", *args)
    return r.code, json.loads(r.out)["secrets"]


def test_fresh_repository_every_key_unknown_with_age_from_lastmodified(platform: Platform) -> None:
    code, rows = _json(platform)
    assert code == 0
    assert {(row["file"], row["key"]) for row in rows} == {(SECRETS, key) for key in platform.tokens}
    for row in rows:
        assert set(row) == {"file", "key", "kind", "rotated_at", "age_days", "max_age_days", "state"}
        assert row["state"] == "unknown" and row["rotated_at"] is None and row["age_days"] == 0
    kinds = {row["key"]: row["kind"] for row in rows}
    assert kinds == {
        "slack-app-token": "slack-app-token",
        "slack-bot-token": "slack-bot-token",
        "matrix-registration-token": "matrix-registration-token",
        "acme-email": "generic",
    }
    maxes = {row["key"]: row["max_age_days"] for row in rows}
    assert maxes == {"slack-app-token": 180, "slack-bot-token": 180, "matrix-registration-token": 90, "acme-email": 365}


def test_unknown_age_comes_from_sops_lastmodified_and_the_table_says_so(platform: Platform) -> None:
    path = platform.root / SECRETS
    text = path.read_text()
    old = (datetime.now(UTC) - timedelta(days=40, hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(re.sub(r'lastmodified: "[^"]+"', f'lastmodified: "{old}"', text))
    _code, rows = _json(platform)
    assert {row["age_days"] for row in rows} == {40}
    r = platform.repo.ops("status")
    assert "never rotated through opssecrets; age from the file's sops lastmodified" in r.out
    assert "40d*" in r.out and "age from sops lastmodified" in r.err


def test_states_and_worst_first(platform: Platform) -> None:
    _record(platform, "matrix-registration-token", 100)  # max 90: overdue
    _record(platform, "slack-bot-token", 170)  # max 180: due (within 14 days)
    _record(platform, "acme-email", 10)  # max 365: ok
    mark_exposed(platform.root, SECRETS, ["slack-app-token"], "alice", operator="dan")
    code, rows = _json(platform)
    assert code == 0
    assert [(row["key"], row["state"]) for row in rows] == [
        ("slack-app-token", "exposed"),
        ("matrix-registration-token", "overdue"),
        ("slack-bot-token", "due"),
        ("acme-email", "ok"),
    ]
    overdue = rows[1]
    assert overdue["age_days"] == 100 and overdue["max_age_days"] == 90
    assert isinstance(overdue["rotated_at"], str) and overdue["rotated_at"].endswith("Z")
    r = platform.repo.ops("status")
    lines = r.out.splitlines()
    assert lines[2].startswith("EXPOSED") and "exposed to alice since" in lines[2]
    assert lines[3].startswith("OVERDUE")
    assert "4 secrets: 1 exposed, 1 overdue, 1 due, 1 ok" in r.err


def test_due_boundaries(platform: Platform) -> None:
    _record(platform, "matrix-registration-token", 75)  # 90 - 14 = 76: still ok
    _record(platform, "slack-bot-token", 166)  # 180 - 14: due
    _record(platform, "slack-app-token", 180)  # at the max: due, not yet overdue
    _record(platform, "acme-email", 366)  # past it: overdue
    _, rows = _json(platform)
    assert {row["key"]: row["state"] for row in rows} == {
        "matrix-registration-token": "ok",
        "slack-bot-token": "due",
        "slack-app-token": "due",
        "acme-email": "overdue",
    }


def test_strict_exits_1_only_when_overdue_or_exposed(platform: Platform) -> None:
    assert platform.repo.ops("status", "--strict").code == 0  # unknown is not a failure
    _record(platform, "slack-bot-token", 170)
    assert platform.repo.ops("status", "--strict").code == 0  # due is not a failure
    _record(platform, "matrix-registration-token", 91)
    r = platform.repo.ops("status", "--strict")
    assert r.code == 1 and "1 secret(s) overdue or exposed" in r.err
    code, rows = _json(platform, "--strict")
    assert code == 1 and rows[0]["state"] == "overdue"  # JSON still printed
    _record(platform, "matrix-registration-token", 1)
    assert platform.repo.ops("status", "--strict").code == 0
    mark_exposed(platform.root, SECRETS, ["acme-email"], "alice")
    assert platform.repo.ops("status", "--strict").code == 1


def test_rotation_clears_exposure(platform: Platform) -> None:
    mark_exposed(platform.root, SECRETS, ["acme-email"], "alice", operator="dan")
    assert platform.repo.ops("status", "--strict").code == 1
    r = platform.repo.ops("rotate", "acme-email", "--stdin", "--reason", "offboarding alice", stdin="new@clarun.example")
    assert r.code == 0, r
    code, rows = _json(platform, "--strict")
    assert code == 0
    row = next(row for row in rows if row["key"] == "acme-email")
    assert row["state"] == "ok" and row["age_days"] == 0


def test_every_encrypted_file_nested_keys_and_repository_policy(platform: Platform) -> None:
    platform.repo.encrypt("secrets/bridge.yaml", "slack:\n  bot_token: abc\n  app_token: def\n")
    platform.repo.write("policies/kinds.toml", "[kinds.slack-bot-token]\nmax_age_days = 30\n")
    platform.repo.write("README.md", "not a secret\n")
    _, rows = _json(platform)
    by_key = {(row["file"], row["key"]): row for row in rows}
    assert by_key[("secrets/bridge.yaml", "slack/bot_token")]["kind"] == "slack-bot-token"
    assert by_key[("secrets/bridge.yaml", "slack/bot_token")]["max_age_days"] == 30
    assert by_key[("secrets/bridge.yaml", "slack/app_token")]["kind"] == "slack-app-token"
    assert all(row["file"] != "README.md" for row in rows)


def test_status_needs_no_identity(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY")
    monkeypatch.setenv("OPSSECRETS_SOPS", "/nonexistent/sops")  # and never runs sops
    _record(platform, "acme-email", 3)
    code, rows = _json(platform)
    assert code == 0 and len(rows) == 4


def test_empty_repository(repo: OpsRepo) -> None:
    r = repo.ops("status", "--json")
    assert r.code == 0 and json.loads(r.out) == {"secrets": []}
    r = repo.ops("status")
    assert r.code == 0 and "(none)" in r.out


def test_malformed_ledger_is_one_clear_line(platform: Platform) -> None:
    platform.repo.write(".opssecrets/ledger.json", '{"version": 1, "files": {\n')
    r = platform.repo.ops("status")
    assert r.code == 2
    assert ".opssecrets/ledger.json, line 2: not valid JSON" in r.err and "restore it from git" in r.err

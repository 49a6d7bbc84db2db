"""The rotation ledger: the API the recipient commands call, its file, and the operator's name."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import AgeKey, OpsRepo
from rotation_support import make_platform

from opssecrets.identity import operator_name
from opssecrets.ledger import LEDGER_PATH, RotationLedger, mark_exposed, record_data_key_rotation
from opssecrets.sopsconfig import recipient_names

T1 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T2 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_mark_exposed_and_record_data_key_rotation(tmp_path: Path) -> None:
    mark_exposed(tmp_path, "secrets/secrets.yaml", ["a", "b"], "alice", when=T1, operator="dan")
    mark_exposed(tmp_path, "secrets/secrets.yaml", ["a"], "alice", when=T2, operator="dan")  # first one counts
    mark_exposed(tmp_path, "secrets/secrets.yaml", ["a"], "old-host", when=T2, operator="dan")
    mark_exposed(tmp_path, "secrets/other.yaml", [], "alice")  # nothing to mark: no file written for it
    data = json.loads((tmp_path / LEDGER_PATH).read_text())
    entry = data["files"]["secrets/secrets.yaml"]
    assert entry["keys"]["a"] == {
        "exposed": True,
        "exposed_to": [
            {"reader": "alice", "since": "2026-01-02T03:04:05Z", "marked_by": "dan"},
            {"reader": "old-host", "since": "2026-02-03T04:05:06Z", "marked_by": "dan"},
        ],
    }
    assert "secrets/other.yaml" not in data["files"]
    ledger = RotationLedger.load(tmp_path)
    assert len(ledger.files["secrets/secrets.yaml"].exposures_since_data_key_rotation()) == 3
    record_data_key_rotation(tmp_path, "secrets/secrets.yaml", T2, readers=["age1reader"], head="c0ffee")
    ledger = RotationLedger.load(tmp_path)
    file_record = ledger.files["secrets/secrets.yaml"]
    assert file_record.data_key_rotated_at == T2
    assert file_record.data_key_readers == ["age1reader"] and file_record.data_key_head == "c0ffee"
    assert file_record.exposures_since_data_key_rotation() == []  # cut off from new values ...
    assert ledger.get("secrets/secrets.yaml", "a").exposed  # ... but still exposed until rotated
    # an exposure after the data-key rotation needs a new one
    mark_exposed(tmp_path, "secrets/secrets.yaml", ["b"], "bob", when=T2, operator="dan")
    assert [
        e.reader for _, e in RotationLedger.load(tmp_path).files["secrets/secrets.yaml"].exposures_since_data_key_rotation()
    ] == ["bob"]


def test_absolute_paths_are_stored_relative(tmp_path: Path) -> None:
    mark_exposed(tmp_path, str(tmp_path / "secrets" / "x.yaml"), ["k"], "alice", when=T1, operator="dan")
    assert list(json.loads((tmp_path / LEDGER_PATH).read_text())["files"]) == ["secrets/x.yaml"]


def test_round_trip_is_stable_and_sorted(tmp_path: Path) -> None:
    ledger = RotationLedger(tmp_path)
    ledger.record_rotation("z.yaml", "b", when=T1, by="dan", reason="r")
    ledger.record_rotation("a.yaml", "k", when=T2, by=None, reason=None)
    ledger.save()
    text = (tmp_path / LEDGER_PATH).read_text()
    assert list(json.loads(text)["files"]) == ["a.yaml", "z.yaml"]
    RotationLedger.load(tmp_path).save()
    assert (tmp_path / LEDGER_PATH).read_text() == text
    assert text.endswith("}\n")


def test_rotation_clears_the_exposure(tmp_path: Path) -> None:
    mark_exposed(tmp_path, "s.yaml", ["k"], "alice", when=T1, operator="dan")
    ledger = RotationLedger.load(tmp_path)
    ledger.record_rotation("s.yaml", "k", when=T2, by="dan", reason="offboarding alice")
    ledger.save()
    record = RotationLedger.load(tmp_path).get("s.yaml", "k")
    assert record is not None and not record.exposed and record.by == "dan"


@pytest.mark.parametrize(
    "text", ["[]", '{"version": 2, "files": {}}', '{"files": {"a": {"keys": {"k": {"rotated_at": "yesterday"}}}}}']
)
def test_unexpected_layout(tmp_path: Path, text: str) -> None:
    from opssecrets.errors import BadInput

    (tmp_path / ".opssecrets").mkdir()
    (tmp_path / LEDGER_PATH).write_text(text)
    with pytest.raises(BadInput, match="restore it from git"):
        RotationLedger.load(tmp_path)


def test_recipient_names_and_operator_name(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    platform = make_platform(repo)
    names = recipient_names(repo.root / ".sops.yaml")
    assert names == {repo.operator.recipient: "dan", platform.host.recipient: "clarun"}
    assert operator_name(repo.root) == "dan"  # from SOPS_AGE_KEY
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# created: now\n# public key: {platform.host.recipient}\n{platform.host.identity}\n")
    monkeypatch.delenv("SOPS_AGE_KEY")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    assert operator_name(repo.root) == "clarun"
    stranger = AgeKey.new()
    key_file.write_text(stranger.identity + "\n")
    assert operator_name(repo.root) == stranger.recipient  # not in .sops.yaml: the public key
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    assert operator_name(repo.root) is None


def test_ledger_holds_nothing_derived_from_a_value(repo: OpsRepo) -> None:
    platform = make_platform(repo)
    value = "value-" + "q" * 40
    assert repo.ops("rotate", "acme-email", "--stdin", "--reason", "yearly", stdin=value).code == 0
    text = (repo.root / LEDGER_PATH).read_text()
    record = json.loads(text)["files"]["secrets/secrets.yaml"]["keys"]["acme-email"]
    assert set(record) == {"rotated_at", "by", "reason", "exposed"}  # no hash, length or prefix
    assert value not in text and "qqqq" not in text
    assert platform.tokens["slack-bot-token"] not in text


# --- the recipient commands mark exposures and data-key rotations -----------------------------


def _ledger(repo: OpsRepo) -> dict[str, object]:
    return json.loads((repo.root / LEDGER_PATH).read_text())


def _status(repo: OpsRepo) -> dict[str, str]:
    r = repo.ops("status", "--json")
    assert r.code == 0, r
    return {row["key"]: row["state"] for row in json.loads(r.out)["secrets"]}


def test_remove_engineer_marks_every_key_they_could_read_exposed(repo: OpsRepo) -> None:
    make_platform(repo)
    alice = AgeKey.new()
    assert repo.ops("add-engineer", "alice", "--age-key", alice.recipient, "--admin").code == 0
    assert repo.decrypt("secrets/secrets.yaml", identity=alice).returncode == 0
    r = repo.ops("remove-engineer", "alice")
    assert r.code == 0, r
    entry = _ledger(repo)["files"]["secrets/secrets.yaml"]  # type: ignore[index]
    assert "data_key_rotated_at" in entry
    for key in ("slack-app-token", "slack-bot-token", "matrix-registration-token", "acme-email"):
        record = entry["keys"][key]
        assert record["exposed"] is True
        (exposure,) = record["exposed_to"]
        assert exposure["reader"] == "alice" and exposure["marked_by"] == "dan" and exposure["data_key_rotated"] is True
    assert set(_status(repo).values()) == {"exposed"}
    assert repo.ops("status", "--strict").code == 1
    # the data key was rotated by remove-engineer, so rotate does not need to do it again
    r = repo.ops("rotate", "acme-email", "--stdin", stdin="new@clarun.example")
    assert r.code == 0 and "data key" not in r.out
    assert _status(repo)["acme-email"] == "ok"


def test_remove_host_and_revoke_mark_exposed(repo: OpsRepo) -> None:
    make_platform(repo)
    r = repo.ops("remove-host", "clarun")
    assert r.code == 0, r
    assert set(_status(repo).values()) == {"exposed"}
    record = _ledger(repo)["files"]["secrets/secrets.yaml"]["keys"]["acme-email"]  # type: ignore[index]
    assert record["exposed_to"][0]["reader"] == "clarun"
    alice = AgeKey.new()
    assert repo.ops("add-engineer", "alice", "--age-key", alice.recipient).code == 0
    assert repo.ops("add-project", "web", "--member", "alice").code == 0
    repo.encrypt("secrets/projects/web/app.yaml", "web-db-password: abc\n")
    r = repo.ops("revoke", "alice", "web")
    assert r.code == 0, r
    web = _ledger(repo)["files"]["secrets/projects/web/app.yaml"]  # type: ignore[index]
    assert web["keys"]["web-db-password"]["exposed_to"][0]["reader"] == "alice"


def test_dry_run_marks_nothing(repo: OpsRepo) -> None:
    make_platform(repo)
    assert repo.ops("remove-host", "clarun", "--dry-run").code == 0
    assert not (repo.root / LEDGER_PATH).exists()


def test_add_host_replace_rotates_but_exposes_nothing_unless_compromised(repo: OpsRepo) -> None:
    import subprocess

    make_platform(repo)

    def new_host_key(name: str) -> str:
        path = repo.root.parent / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path.with_suffix(".pub").read_text()

    r = repo.ops("add-host", "clarun", "--replace", "--ssh-host-key", new_host_key("reinstalled"))
    assert r.code == 0, r
    entry = _ledger(repo)["files"]["secrets/secrets.yaml"]  # type: ignore[index]
    assert "data_key_rotated_at" in entry
    assert all(not record["exposed"] for record in entry["keys"].values())
    assert "exposed" not in _status(repo).values()
    r = repo.ops("add-host", "clarun", "--replace", "--compromised", "--ssh-host-key", new_host_key("stolen"))
    assert r.code == 0, r
    assert set(_status(repo).values()) == {"exposed"}
    r = repo.ops("add-host", "other", "--compromised", "--ssh-host-key", new_host_key("x"))
    assert r.code == 2 and "--compromised goes with --replace" in r.err


def test_the_ledger_is_told_who_it_does_not_look() -> None:
    """The ledger holds data; callers pass who ran it and who reads a file. No import reaches
    out to find them, at the top or hidden inside a function."""
    import opssecrets.ledger

    tree = ast.parse(Path(opssecrets.ledger.__file__).read_text())
    top_level = set(tree.body)
    reaching = {"opssecrets.identity", "opssecrets.sopsconfig", "opssecrets.git", "opssecrets.secretfile", "opssecrets.repo"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            assert not reaching & set(names), f"ledger.py line {node.lineno} imports {names}"
            assert node in top_level or _under_type_checking(tree, node), f"ledger.py line {node.lineno}: import inside a function"


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(top, ast.If) and node in top.body for top in tree.body)

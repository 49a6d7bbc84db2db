"""How the identity reaches sops: user variables, then the keyring, then sops' default key file.

sops is the real binary; where a test must see what sops received, a small wrapper script
(a real program named by OPSSECRETS_SOPS) records sops' argv and a hash of its
SOPS_AGE_KEY before running the real sops.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, AgeKey, OpsRepo

from opssecrets.sops import find_sops

TESTS = Path(__file__).resolve().parent
CHILD_PATH = {"PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{TESTS}"}


def put_in_keyring(store: Path, identity: str) -> None:
    store.write_text(json.dumps({"opssecrets": {"age-identity": identity}}))


def build_repo(repo: OpsRepo, readers: list[AgeKey]) -> str:
    """A repo whose one secret file is readable by ``readers`` only; returns the token planted in it."""
    anchors = "\n".join(f"  - &reader{i} {key.recipient}" for i, key in enumerate(readers))
    refs = ", ".join(f"*reader{i}" for i in range(len(readers)))
    repo.write(".sops.yaml", f"keys:\n{anchors}\ncreation_rules:\n  - path_regex: ^secrets/\n    age: [{refs}]\n")
    token = "tok-" + os.urandom(8).hex()
    repo.encrypt("secrets/app.yaml", f"app:\n  token: {token}\n")
    return token


@pytest.fixture
def sops_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OPSSECRETS_SOPS -> a wrapper that logs argv and sha256(SOPS_AGE_KEY), then runs the real sops."""
    real = find_sops().path
    log = tmp_path / "spy"
    spy = tmp_path / "sops-spy"
    spy.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}.argv"\n'
        'if [ -n "${SOPS_AGE_KEY+x}" ]; then h=$(printf %s "$SOPS_AGE_KEY" | sha256sum | cut -d" " -f1); else h=unset; fi\n'
        f'printf "%s %s\\n" "$h" "${{SOPS_AGE_KEY_FILE:-unset}}" >> "{log}.env"\n'
        f'exec "{real}" "$@"\n'
    )
    spy.chmod(0o755)
    monkeypatch.setenv("OPSSECRETS_SOPS", str(spy))
    return log


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def decrypt_calls(log: Path) -> list[tuple[str, str]]:
    argv = Path(f"{log}.argv").read_text().splitlines()
    env = Path(f"{log}.env").read_text().splitlines()
    return [tuple(e.split(" ", 1)) for a, e in zip(argv, env, strict=True) if " decrypt " in f" {a} "]  # type: ignore[misc]


def test_keyring_identity_reaches_sops_only_through_its_environment(
    repo: OpsRepo, keyring_store: Path, sops_spy: Path, tmp_path: Path
) -> None:
    me = AgeKey.new()
    build_repo(repo, [me])
    put_in_keyring(keyring_store, me.identity)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    result = repo.ops_proc("share", "app/token", "--to", "reader0", env={**CHILD_PATH, "TMPDIR": str(scratch)})
    assert result.code == 0, result
    assert result.out.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    calls = decrypt_calls(sops_spy)
    assert calls == [(sha(me.identity), "unset")]
    assert me.identity not in Path(f"{sops_spy}.argv").read_text()
    assert list(scratch.iterdir()) == []  # no temp file holding the identity


def test_users_own_key_file_is_passed_through_and_wins_over_the_keyring(
    repo: OpsRepo, keyring_store: Path, sops_spy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_keyring, in_file = AgeKey.new(), AgeKey.new()
    build_repo(repo, [in_keyring])  # only the keyring identity can read it
    put_in_keyring(keyring_store, in_keyring.identity)
    key_file = tmp_path / "mine.txt"
    key_file.write_text(in_file.identity + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    result = repo.ops("share", "app/token", "--to", "reader0")
    assert result.code == 3, result  # the keyring was not consulted: the user's choice stands
    assert "no identity here can decrypt secrets/app.yaml" in result.err
    assert decrypt_calls(sops_spy) == [("unset", str(key_file))]


def test_users_sops_age_key_is_passed_through_untouched(
    repo: OpsRepo, keyring_store: Path, sops_spy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_keyring, in_env = AgeKey.new(), AgeKey.new()
    build_repo(repo, [in_env])
    put_in_keyring(keyring_store, in_keyring.identity)
    monkeypatch.setenv("SOPS_AGE_KEY", in_env.identity)
    result = repo.ops("share", "app/token", "--to", "reader0")
    assert result.code == 0, result
    assert decrypt_calls(sops_spy) == [(sha(in_env.identity), "unset")]


def test_headless_machine_falls_back_silently_to_sops_default_key_file(
    repo: OpsRepo, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    me = AgeKey.new()
    token = build_repo(repo, [me])
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    repo.extra_env.clear()
    default = isolated_home / ".config" / "sops" / "age" / "keys.txt"
    default.parent.mkdir(parents=True)
    default.write_text(me.identity + "\n")
    result = repo.ops_proc("share", "app/token", "--to", "reader0", env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert result.code == 0, result
    assert "keyring" not in result.err.lower()
    opened = subprocess.run(["age", "-d", "-i", str(default)], input=result.out.encode(), capture_output=True, check=True)
    assert opened.stdout.decode() == token


def test_locked_keyring_falls_back_silently(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    me = AgeKey.new()
    build_repo(repo, [me])
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    repo.extra_env.clear()
    default = isolated_home / ".config" / "sops" / "age" / "keys.txt"
    default.parent.mkdir(parents=True)
    default.write_text(me.identity + "\n")
    result = repo.ops_proc(
        "share", "app/token", "--to", "reader0", env={**CHILD_PATH, "PYTHON_KEYRING_BACKEND": "keyring_backends.LockedKeyring"}
    )
    assert result.code == 0, result
    assert "locked" not in result.err.lower()


def test_no_identity_anywhere_is_one_clear_line(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    build_repo(repo, [AgeKey.new()])
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    repo.extra_env.clear()
    before = repo.snapshot()
    result = repo.ops_proc("share", "app/token", "--to", "reader0", env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert result.code == 3, result
    assert result.err.count("\n") == 1 and "identity import" in result.err
    assert result.out == ""
    assert repo.snapshot() == before


def test_keyring_is_imported_only_when_sops_runs(repo: OpsRepo) -> None:
    build_repo(repo, [repo.operator])
    script = (
        "import sys\n"
        "from opssecrets.errors import NoIdentity\n"
        "from pathlib import Path\n"
        "from opssecrets.repo import Repo\n"
        f"repo = Repo(Path({str(repo.root)!r}))\n"
        "sops = repo.sops\n"
        "print('before', 'keyring' in sys.modules)\n"
        "try:\n"
        "    sops.decrypt('secrets/app.yaml')\n"
        "    print('decrypted')\n"
        "except NoIdentity:\n"
        "    print('no identity')\n"
        "print('after', 'keyring' in sys.modules)\n"
    )
    env = {**os.environ, **CHILD_PATH, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    # the user's own variable: the keyring is never needed, never imported
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.stdout.split() == ["before", "False", "decrypted", "after", "False"], proc.stderr
    # nothing set: the keyring is asked at the first sops call, not before
    del env["SOPS_AGE_KEY"]
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.stdout.split() == ["before", "False", "no", "identity", "after", "True"], proc.stderr


def test_recipient_changes_decrypt_with_the_keyring_identity(repo: OpsRepo, keyring_store: Path, sops_spy: Path) -> None:
    """updatekeys (in add-engineer) needs the data key: the keyring identity reaches it the same way."""
    admin, bob = AgeKey.new(), AgeKey.new()
    put_in_keyring(keyring_store, admin.identity)
    assert repo.ops("init", "--admin", "dan", "--age-key", admin.recipient).code == 0
    repo.encrypt("secrets/secrets.yaml", "acme-email: ops@example.org\n")
    result = repo.ops_proc("add-engineer", "bob", "--age-key", bob.recipient, "--admin", env=CHILD_PATH)
    assert result.code == 0, result
    assert repo.decrypt("secrets/secrets.yaml", identity=bob).returncode == 0
    env_lines = Path(f"{sops_spy}.env").read_text().splitlines()
    argv_lines = Path(f"{sops_spy}.argv").read_text().splitlines()
    updatekeys = [e for a, e in zip(argv_lines, env_lines, strict=True) if "updatekeys" in a]
    assert updatekeys and all(line == f"{sha(admin.identity)} unset" for line in updatekeys)
    assert admin.identity not in "\n".join(argv_lines)


def test_a_sops_call_does_not_load_the_sops_yaml_editor(repo: OpsRepo) -> None:
    """Every command that runs sops imports the identity module; only a change asks who ran
    it (the name from .sops.yaml). So a decrypt must not pay for the round-trip editor."""
    build_repo(repo, [repo.operator])
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from opssecrets.repo import Repo\n"
        f"Repo(Path({str(repo.root)!r})).sops.decrypt('secrets/app.yaml')\n"
        "print(' '.join(m for m in ('opssecrets.sopsconfig', 'opssecrets.yamltree') if m in sys.modules) or 'lean')\n"
    )
    env = {**os.environ, **CHILD_PATH}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.stdout.split() == ["lean"], (proc.stdout, proc.stderr)

"""docs/onboarding.md's SSH-key path, run as written: the admin's block, then the engineer's, with
a passphrase-protected ~/.ssh/id_ed25519 and nothing else (no age identity anywhere)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, OpsRepo
from keyring_backends import BACKEND_NAME, STORE_VAR

TESTS = Path(__file__).resolve().parent
DOC = PROJECT_ROOT / "docs" / "onboarding.md"
PASSPHRASE = "onboarding passphrase"


def doc_block(marker: str) -> list[str]:
    """The command lines of the sh block after ``<!-- marker ... -->``."""
    text = DOC.read_text()
    match = re.search(rf"<!-- {marker}:[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert match is not None, f"no block marked {marker} in {DOC}"
    return [line for line in match.group(1).splitlines() if line.strip()]


def run_line(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_the_ssh_key_path_in_the_onboarding_doc_works(repo: OpsRepo, isolated_home: Path, tmp_path: Path) -> None:
    key = isolated_home / ".ssh" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "alice@laptop", "-f", str(key)], check=True)
    assert repo.ops("init", "--admin", "dan", "--age-key", repo.operator.recipient).code == 0
    assert repo.ops("add-project", "hello-bot").code == 0
    repo.encrypt("secrets/projects/hello-bot/secrets.yaml", "bot-password: hello-0001\n")
    (repo.root / "id_ed25519.pub").write_bytes(key.with_name("id_ed25519.pub").read_bytes())  # what alice sent the admin

    base = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_") and k != "SSH_TO_AGE_PASSPHRASE"}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base['PATH']}"  # where `opssecrets` is installed
    base["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}{TESTS}"
    admin = {**base, "SOPS_AGE_KEY": repo.operator.identity}
    for line in doc_block("ssh-path-admin"):
        done = run_line(line, repo.root, admin)
        assert done.returncode == 0, (line, done.stdout, done.stderr)

    store = tmp_path / "alice-keyring.json"
    alice = {**base, "PYTHON_KEYRING_BACKEND": BACKEND_NAME, STORE_VAR: str(store), "SSH_TO_AGE_PASSPHRASE": PASSPHRASE}
    outputs = []
    for line in doc_block("ssh-path-engineer"):
        done = run_line(line, repo.root, alice)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        outputs.append(done.stdout + done.stderr)
        if "identity import" in line:
            alice.pop("SSH_TO_AGE_PASSPHRASE")  # from here on the keyring serves; no passphrase is needed
    assert "sops opens 1 of 1 secret file(s)" in outputs[1]
    assert "OS keyring" in outputs[-1] and "sops opens 1 of 1 secret file(s)" in outputs[-1]
    assert json.loads(store.read_text())["opssecrets"]["age-identity"].startswith("AGE-SECRET-KEY-1")
    assert all(PASSPHRASE not in out for out in outputs)

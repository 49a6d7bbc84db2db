"""The public Sops methods, on real files with the real sops: a Sops with its own environment
(the demo's) encrypts from stdin for the creation rule, reads with the identity that
environment names, and can_decrypt answers for whoever asks."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import AgeKey, OpsRepo

from opssecrets.secretfile import read_secret_file
from opssecrets.sops import Sops


def _key_file(path: Path, key: AgeKey) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.identity + "\n")
    return path


def test_a_sops_with_its_own_environment_encrypts_for_the_rule_and_reads_with_that_identity(repo: OpsRepo, tmp_path: Path) -> None:
    own, stranger = AgeKey.new(), AgeKey.new()
    config = repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {own.recipient}\n")
    # the environment the demo hands its children: its own key file, none of ours; a recipient
    # variable in it would make sops ignore .sops.yaml, so it is dropped all the same
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env |= {"SOPS_AGE_KEY_FILE": str(_key_file(tmp_path / "own.txt", own)), "SOPS_AGE_RECIPIENTS": stranger.recipient}
    theirs = Sops.at(repo.root, config, env=env)

    ciphertext = theirs.encrypt("secrets/new.yaml", b"token: not-a-real-token-1234\n", "yaml")
    assert b"not-a-real-token-1234" not in ciphertext
    path = repo.root / "secrets" / "new.yaml"
    path.parent.mkdir()
    path.write_bytes(ciphertext)
    assert read_secret_file(path).metadata.age_recipients == frozenset({own.recipient})

    assert theirs.extract("secrets/new.yaml", "token") == b"not-a-real-token-1234"
    assert theirs.can_decrypt("secrets/new.yaml").opens
    # the test process's own identity (the operator's SOPS_AGE_KEY) is no recipient
    ours = Sops.at(repo.root, config)
    answer = ours.can_decrypt("secrets/new.yaml")
    assert not answer.opens and answer.why and "not-a-real-token" not in answer.why

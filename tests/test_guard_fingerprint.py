"""Findings do not help anyone guess a value: no prefix, and a fingerprint keyed with a local key."""

from __future__ import annotations

import hashlib
import json
import re
import stat

import guard_support as tok
import pytest
from conftest import OpsRepo

KEY_FILE = ".git/opssecrets/fingerprint.key"
NOT_HEX_UPPER = "GHJKLMNPQRSTUVWXYZ"


def password() -> str:
    # starts with four letters that cannot occur in a hex fingerprint or in the message text
    return tok.rand(4, NOT_HEX_UPPER) + tok.rand(4, "abcdefghjkmnpqrstuvwxyz") + tok.digits(4) + tok.rand(8)


def fingerprints(output: str) -> list[str]:
    return re.findall(r"fingerprint (\S+?)\)", output)


def test_fingerprint_is_keyed_stable_and_shows_nothing_of_the_value(repo: OpsRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSSECRETS_FINGERPRINT_KEY", raising=False)
    value = password()
    repo.write("app/settings.py", f'DB_PASSWORD = "{value}"\n')
    first = repo.ops("check", "app/settings.py")
    second = repo.ops("check", "--json", "app/settings.py")
    assert first.code == second.code == 1, first
    printed = fingerprints(first.out)
    assert len(printed) == 1 and printed == fingerprints(json.dumps(json.loads(second.out)))
    plain = hashlib.sha256(value.encode()).hexdigest()
    assert plain[:16] not in printed[0] and printed[0].startswith("hmac-sha256:")
    for output in (first.out + first.err, second.out + second.err):
        assert value[:4] not in output
        tok.assert_redacted(value, output)
    key = repo.root / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # a different key (another machine) gives a different fingerprint for the same value
    key.unlink()
    third = repo.ops("check", "app/settings.py")
    assert fingerprints(third.out) != printed


def test_the_printed_fingerprint_allowlists_the_value_and_a_ci_key_comes_from_the_environment(
    repo: OpsRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSSECRETS_FINGERPRINT_KEY", tok.rand(40))
    value = password()
    repo.write("app/settings.py", f'DB_PASSWORD = "{value}"\n')
    printed = fingerprints(repo.ops("check", "app/settings.py").out)
    assert len(printed) == 1
    assert not (repo.root / KEY_FILE).exists()  # the environment's key, nothing written
    repo.write("policies/leaks.toml", f'[allowlist]\nfingerprints = ["{printed[0]}"]\n')
    result = repo.ops("check", "app/settings.py")
    assert (result.code, result.out) == (0, ""), result

"""The guard tests' helpers: secrets made at run time (a committed literal would be a leak), and the JSON run."""

from __future__ import annotations

import base64
import json
import secrets
import string
import zlib
from typing import TYPE_CHECKING

from opssecrets.guard.validators import base62
from opssecrets.keys import generate_identity

if TYPE_CHECKING:
    from conftest import OpsRepo

ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    # avoid accidental placeholder words ("fake", "todo"...) by rejecting them
    while True:
        out = "".join(secrets.choice(alphabet) for _ in range(n))
        low = out.lower()
        if not any(word in low for word in ("your", "fake", "todo", "here", "xxxx", "sample", "dummy", "insert")):
            return out


def digits(n: int) -> str:
    return rand(n, string.digits)


def slack_bot() -> str:
    return "xox" + "b-" + digits(11) + "-" + digits(13) + "-" + rand(24)


def slack_user() -> str:
    return "xox" + "p-" + digits(11) + "-" + digits(12) + "-" + digits(13) + "-" + rand(32, "0123456789abcdef")


def slack_app() -> str:
    return "xa" + "pp-1-A" + rand(10, string.ascii_uppercase + string.digits) + "-" + digits(13) + "-" + rand(64, "0123456789abcdef")


def slack_config_access() -> str:
    return "xoxe" + ".xoxp-1-" + rand(150)


def slack_config_refresh() -> str:
    return "xoxe" + "-1-" + rand(146)


def slack_webhook() -> str:
    return (
        "https://hooks.slack"
        + ".com/services/T"
        + rand(10, string.ascii_uppercase + string.digits)
        + "/B"
        + rand(10, string.ascii_uppercase + string.digits)
        + "/"
        + rand(24)
    )


def matrix_token(valid: bool = True) -> str:
    local = base64.b64encode(b"alice").decode().rstrip("=")
    base = "sy" + "t_" + local + "_" + rand(20, string.ascii_letters)
    check = base62(zlib.crc32(base.encode()), 6)
    if not valid:
        check = check[:-1] + ("A" if check[-1] != "A" else "B")
    return base + "_" + check


def age_identity(valid: bool = True) -> str:
    ident = generate_identity()
    if valid:
        return ident
    last = ident[-1]
    return ident[:-1] + ("Q" if last != "Q" else "P")


def pem_block(kind: str = "RSA ") -> str:
    body = "\n".join(base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(6))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----\n"


def openssh_block() -> str:
    body = "\n".join(base64.b64encode(secrets.token_bytes(52)).decode() for _ in range(6))
    return "-----BEGIN OPENSSH " + f"PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"


def github_classic() -> str:
    return "gh" + "p_" + rand(36)


def github_fine_grained() -> str:
    return "github" + "_pat_" + rand(22) + "_" + rand(59)


def gitlab() -> str:
    return "gl" + "pat-" + rand(20)


def aws_key() -> str:
    return "AK" + "IA" + rand(16, string.ascii_uppercase + "234567")


def url_credentials() -> str:
    return "https://deploy:" + rand(24) + "@git.clarun.xyz/ops/infra.git"


def generic_value() -> str:
    return rand(40)


def findings(repo: OpsRepo, *args: str) -> list[dict[str, object]]:
    result = repo.ops("check", "--json", *args)
    assert result.code in (0, 1), result
    payload = json.loads(result.out)
    assert set(payload) == {"findings", "binary"}
    for finding in payload["findings"]:
        assert set(finding) == {"path", "line", "rule", "message"}
    assert (result.code == 1) == bool(payload["findings"]), result
    return list(payload["findings"])


def assert_redacted(secret: str, output: str) -> None:
    """At most the first four characters of ``secret`` appear: no 6-character window past them."""
    for i in range(1, len(secret) - 5):
        assert secret[i : i + 6] not in output, f"characters {i}..{i + 6} of the secret leaked"

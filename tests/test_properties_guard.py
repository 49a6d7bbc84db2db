"""Property tests for the guard's leak scanner.

- Text in a random format (yaml, json, env, nix, toml, plain text) with filler lines and
  planted tokens of every kind at random positions: every planted token is found, on its
  line, by its rule.
- Real sops files (real ciphertext from real sops, in every format sops writes) holding
  random trees whose values include those same tokens: the scanner finds nothing, and the
  sops-file structure checker finds nothing either.

Every token is generated at run time (tests/guard_support.py); nothing secret-looking is
committed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opssecrets.guard.scanner import LeakScanner
from opssecrets.guard.sopsfiles import check_covered_file
from opssecrets.policy_leaks import load_leak_policy
from opssecrets.rules import CreationRule, KeyGroup
from tests import guard_support as tok
from tests.conftest import AgeKey, run_sops, sops_env

EXAMPLES = int(os.environ.get("OPSSECRETS_PROPERTY_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
SOPS_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# kind -> (rule id, maker, is a multi-line block)
KINDS: dict[str, tuple[str, Callable[[], str], bool]] = {
    "slack-bot": ("slack-bot-token", tok.slack_bot, False),
    "slack-user": ("slack-user-token", tok.slack_user, False),
    "slack-app": ("slack-app-token", tok.slack_app, False),
    "slack-config-access": ("slack-config-access-token", tok.slack_config_access, False),
    "slack-config-refresh": ("slack-config-refresh-token", tok.slack_config_refresh, False),
    "slack-webhook": ("slack-webhook-url", tok.slack_webhook, False),
    "matrix": ("matrix-access-token", tok.matrix_token, False),
    "age": ("age-identity", tok.age_identity, False),
    "github": ("github-token", tok.github_classic, False),
    "github-fine": ("github-fine-grained-token", tok.github_fine_grained, False),
    "gitlab": ("gitlab-token", tok.gitlab, False),
    "aws": ("aws-access-key", tok.aws_key, False),
    "url": ("url-credentials", tok.url_credentials, False),
    "pem-rsa": ("private-key", lambda: tok.pem_block("RSA "), True),
    "pem-ec": ("private-key", lambda: tok.pem_block("EC "), True),
    "pem-pkcs8": ("private-key", lambda: tok.pem_block(""), True),
    "openssh": ("openssh-private-key", tok.openssh_block, True),
}
FORMATS = ("yaml", "json", "env", "nix", "toml", "txt")
EXTENSION = {"yaml": "config.yaml", "json": "config.json", "env": "app.env", "nix": "host.nix", "toml": "app.toml", "txt": "NOTES"}

# Filler lines: ordinary configuration, none of them a secret.
FILLER = {
    "yaml": ("server: chat.example.org", "port: 8448", "# a comment", "enabled: true", "paths:", "  - /var/lib/app", ""),
    "json": ('  "server": "chat.example.org",', '  "port": 8448,', '  "enabled": true,'),
    "env": ("PORT=8448", "# a comment", "HOST=chat.example.org", "LOG_LEVEL=info", ""),
    "nix": ("services.nginx.enable = true;", "# a comment", 'networking.hostName = "clarun";', "  port = 8448;", ""),
    "toml": ("[server]", 'host = "chat.example.org"', "port = 8448", "# a comment", ""),
    "txt": ("Deploy notes for the chat bridge.", "Restart the service after a change.", "", "- step one", "see the runbook"),
}
NEUTRAL_KEYS = ("value", "data", "item", "setting", "blob")


@dataclass(frozen=True)
class Planted:
    rule: str
    token: str
    line: int


def plant(fmt: str, key: str, token: str, block: bool, indent: str, inline: str) -> str:
    """The text of one planted token, in ``fmt``'s syntax (may span lines for key blocks)."""
    if block:
        body = token.rstrip("\n").split("\n")
        if fmt == "yaml":
            return f"{indent}{key}: |\n" + "\n".join(f"{indent}  {line}" for line in body)
        if fmt == "nix":
            return f"{indent}{key} = ''\n" + "\n".join(f"{indent}  {line}" for line in body) + f"\n{indent}'';"
        if fmt == "toml":
            return f'{key} = """\n' + "\n".join(body) + '\n"""'
        if fmt == "env":
            return f'{key.upper()}="' + "\n".join(body) + '"'
        return "\n".join(body)
    if fmt == "yaml":
        return f"{indent}{key}: {inline}{token}{inline}"
    if fmt == "json":
        return f'  "{key}": "{token}",'
    if fmt == "env":
        return f"{key.upper()}={inline}{token}{inline}"
    if fmt == "nix":
        return f'{indent}{key} = "{token}";'
    if fmt == "toml":
        return f'{key} = "{token}"'
    return f"the {key} is {inline}{token}{inline} for now"


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, str, list[Planted]]:
    fmt = draw(st.sampled_from(FORMATS))
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=4))
    if fmt == "json":
        kinds = [k for k in kinds if not KINDS[k][2]] or ["slack-bot"]  # JSON strings hold no raw newlines
    chunks: list[str | tuple[str, Planted | None]] = []
    fill = st.lists(st.sampled_from(FILLER[fmt]), max_size=6)
    planted: list[tuple[str, str, str]] = []
    for kind in kinds:
        chunks.extend(draw(fill))
        rule, make, block = KINDS[kind]
        token = make()
        key = draw(st.sampled_from(NEUTRAL_KEYS))
        indent = draw(st.sampled_from(("", "  ", "    "))) if fmt in ("yaml", "nix") else ""
        inline = draw(st.sampled_from(("", "'", '"'))) if fmt in ("yaml", "env") else ""
        if fmt == "txt":
            inline = draw(st.sampled_from(("", "'", '"', "`")))
        text = plant(fmt, key, token, block, indent, inline)
        chunks.append(("\0planted", None))
        planted.append((rule, token, text))
    chunks.extend(draw(fill))
    lines: list[str] = []
    found: list[Planted] = []
    queue = iter(planted)
    for chunk in chunks:
        if isinstance(chunk, tuple):
            rule, token, text = next(queue)
            first = token.split("\n", 1)[0]
            offset = next(i for i, line in enumerate(text.split("\n")) if first in line)
            found.append(Planted(rule, token, len(lines) + offset + 1))
            lines.extend(text.split("\n"))
        else:
            lines.append(chunk)
    body = "\n".join(lines)
    if fmt == "json":
        body = "{\n" + body + '\n  "end": 0\n}'
        found = [Planted(p.rule, p.token, p.line + 1) for p in found]
    body += "\n" if draw(st.booleans()) else ""
    if draw(st.booleans()):
        body = body.replace("\n", "\r\n")  # files from Windows editors
    return fmt, body, found


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> LeakScanner:
    return LeakScanner(load_leak_policy(tmp_path_factory.mktemp("no-repo-policy")))


@SETTINGS
@given(doc=documents())
def test_every_planted_token_is_found_on_its_line_by_its_rule(scanner: LeakScanner, doc: tuple[str, str, list[Planted]]) -> None:
    fmt, text, planted = doc
    findings = scanner.scan(EXTENSION[fmt], text.encode("utf-8"))
    got = {(f.line, f.rule) for f in findings}
    for p in planted:
        assert (p.line, p.rule) in got, (fmt, p.rule, p.line, text, findings)
    for finding in findings:  # the message shows a redacted token, never the token
        assert all(p.token.split("\n")[1 if "\n" in p.token else 0] not in finding.message for p in planted)


# -- real sops files hold nothing the scanner reports ------------------------------------------

VALUE_KEYS = ("password", "api_token", "db_secret", "bot_token", "webhook_url", "host", "port", "note", "private_key")


def token_values() -> st.SearchStrategy[str]:
    single = [k for k, (_, _, block) in KINDS.items() if not block]
    return st.one_of(
        st.sampled_from(single).map(lambda k: KINDS[k][1]()),
        st.sampled_from(["pem-rsa", "openssh"]).map(lambda k: KINDS[k][1]()),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=40),
    )


@st.composite
def plain_trees(draw: st.DrawFn) -> tuple[str, str]:
    """(file name, plaintext) in one of sops' formats."""
    fmt = draw(st.sampled_from(("yaml", "json", "env", "ini")))
    keys = draw(st.lists(st.sampled_from(VALUE_KEYS), min_size=1, max_size=5, unique=True))
    values = {key: draw(token_values()) for key in keys}
    if fmt in ("env", "ini"):
        values = {k: v.replace("\n", "") for k, v in values.items()}  # flat formats: one line each
    if fmt == "yaml":
        nested = {"app": values} if draw(st.booleans()) else values
        return "secrets.yaml", json.dumps(nested)  # JSON is YAML; sops rewrites it as YAML
    if fmt == "json":
        return "secrets.json", json.dumps({"app": values, "n": draw(st.integers(0, 9))})
    if fmt == "env":
        return "secrets.env", "".join(f"{k.upper()}={v}\n" for k, v in values.items())
    return "secrets.ini", "[app]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


@SOPS_SETTINGS
@given(tree=plain_trees())
def test_real_sops_files_are_clean(scanner: LeakScanner, tree: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    name, plaintext = tree
    root = tmp_path_factory.mktemp("sopsfile")
    reader = AgeKey.new()
    (root / ".sops.yaml").write_text(f"creation_rules:\n  - age: {reader.recipient}\n")
    (root / name).write_text(plaintext)
    proc = run_sops("encrypt", "-i", name, cwd=root, env=sops_env(), config=".sops.yaml", timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    data = (root / name).read_bytes()
    assert scanner.scan(name, data) == []
    rule = CreationRule(0, None, (KeyGroup(age=(reader.recipient,)),))
    assert check_covered_file(name, data, rule) == []


def test_the_planting_is_what_the_scanner_sees(scanner: LeakScanner) -> None:
    """The generator's line numbers are right: a known layout, checked by hand."""
    token = tok.slack_bot()
    text = plant("yaml", "value", token, False, "  ", "'")
    doc = f"a: 1\nb:\n{text}\n"
    (finding,) = scanner.scan("x.yaml", doc.encode())
    assert (finding.line, finding.rule) == (3, "slack-bot-token")


def test_kinds_cover_every_pattern_rule(scanner: LeakScanner) -> None:
    rule_ids = {rule.id for rule in scanner.policy.rules}
    assert {rule for rule, _, _ in KINDS.values()} == rule_ids

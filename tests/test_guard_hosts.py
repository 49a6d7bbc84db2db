"""Each NixOS host can decrypt the sops files its configuration declares (sops-nix#333, #955)."""

from __future__ import annotations

import guard_support as tok
from conftest import AgeKey, OpsRepo
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from guard_support import findings

RULE = "sops-nix-host-cannot-decrypt"

HOST_CONFIG = """{ config, ... }:
{
  imports = [ ../../modules/hello-bot.nix ];
  sops.defaultSopsFile = ../../secrets/secrets.yaml;
  sops.age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
  sops.secrets."matrix-registration-token" = { };
  sops.secrets."slack-bot-token" = { restartUnits = [ "mautrix-slack.service" ]; };
}
"""

BOT_MODULE = """{ config, ... }:
{
  sops.secrets."matrix-access-token".sopsFile = ../secrets/projects/hello-bot/secrets.yaml;
  systemd.services.hello-bot.serviceConfig.EnvironmentFile = config.sops.secrets."matrix-access-token".path;
}
"""


def sops_yaml(admin: str, host: str, *, host_in_project: bool = True, host_in_platform: bool = True) -> str:
    project_readers = "      - *admin_dan\n" + ("      - *host_clarun\n" if host_in_project else "")
    platform_readers = "      - *admin_dan\n" + ("      - *host_clarun\n" if host_in_platform else "")
    return (
        "keys:\n"
        f"  - &admin_dan {admin}\n"
        f"  - &host_clarun {host}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/projects/hello-bot/\n"
        "    age:\n" + project_readers + "  - path_regex: ^secrets/\n    age:\n" + platform_readers
    )


def platform(repo: OpsRepo, host: str, **readers: bool) -> None:
    """The platform's layout: host clarun, its secrets, the hello-bot project, all committed."""
    repo.write(".sops.yaml", sops_yaml(repo.operator.recipient, host, **readers))
    repo.encrypt("secrets/secrets.yaml", f"matrix-registration-token: {tok.rand(32)}\nslack-bot-token: {tok.rand(30)}\n")
    repo.encrypt("secrets/projects/hello-bot/secrets.yaml", f"matrix-access-token: syt_{tok.rand(20)}\n")
    repo.write("hosts/clarun/configuration.nix", HOST_CONFIG)
    repo.write("modules/hello-bot.nix", BOT_MODULE)
    repo.git("add", "-A")
    repo.git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "platform")


def host_findings(repo: OpsRepo, *args: str) -> list[dict[str, object]]:
    return [f for f in findings(repo, *(args or ("--all",))) if f["rule"] == RULE]


def test_host_that_reads_every_declared_file_has_no_finding(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient)
    assert findings(repo, "--all") == []


def test_project_file_the_host_cannot_read_is_found_and_grant_fixes_it(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient, host_in_project=False)
    found = host_findings(repo)
    assert [(f["path"], f["line"]) for f in found] == [("modules/hello-bot.nix", 3)]
    message = str(found[0]["message"])
    assert "host clarun cannot decrypt secrets/projects/hello-bot/secrets.yaml" in message
    assert "'opssecrets grant clarun hello-bot'" in message
    assert "rule 1" in message and "metadata" in message

    assert repo.ops("grant", "clarun", "hello-bot").code == 0
    assert host_findings(repo) == []


def test_rule_grants_but_file_was_never_reencrypted(repo: OpsRepo) -> None:
    host = AgeKey.new()
    platform(repo, host.recipient, host_in_platform=False)
    # the rule now names the host, but secrets/secrets.yaml is still wrapped for the admin only
    repo.write(".sops.yaml", sops_yaml(repo.operator.recipient, host.recipient))
    found = host_findings(repo)
    assert [(f["path"], f["line"]) for f in found] == [("hosts/clarun/configuration.nix", 6)]
    message = str(found[0]["message"])
    assert "secrets/secrets.yaml" in message and "the file's own sops metadata" in message
    assert "rule 2" not in message
    assert "'opssecrets reencrypt secrets/secrets.yaml'" in message
    assert repo.decrypt("secrets/secrets.yaml", identity=host).returncode != 0  # the finding is true

    assert repo.ops("reencrypt").code == 0
    assert host_findings(repo) == []
    assert repo.decrypt("secrets/secrets.yaml", identity=host).returncode == 0


def test_host_without_a_recipient_is_told_to_add_host(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient)
    repo.write("machines/web/default.nix", '{ ... }: {\n  sops.secrets."x".sopsFile = ../../secrets/projects/hello-bot/secrets.yaml;\n}\n')
    found = host_findings(repo, "machines/web/default.nix")
    assert len(found) == 1
    message = str(found[0]["message"])
    assert "host web cannot decrypt" in message and "no recipient" in message
    assert "opssecrets add-host web --ssh-host-key /etc/ssh/ssh_host_ed25519_key.pub --project hello-bot" in message


def test_native_ssh_recipient_is_a_finding(repo: OpsRepo) -> None:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    ssh_key = public.decode()
    platform(repo, ssh_key)  # sops accepts it and records an ssh stanza sops-nix cannot open
    found = host_findings(repo)
    assert {f["path"] for f in found} == {"hosts/clarun/configuration.nix", "modules/hello-bot.nix"}
    assert all("native ssh-ed25519" in str(f["message"]) and "sops-nix#955" in str(f["message"]) for f in found)


def test_flake_host_template_placeholders_and_key_groups(repo: OpsRepo) -> None:
    host, other = AgeKey.new(), AgeKey.new()
    repo.write(
        ".sops.yaml",
        "keys:\n"
        f"  - &admin_dan {repo.operator.recipient}\n  - &server_gw {host.recipient}\n  - &admin_eve {other.recipient}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/split\\.yaml$\n"
        "    key_groups:\n      - age: [*admin_dan, *server_gw]\n      - age: [*admin_dan, *admin_eve]\n"
        "  - path_regex: ^secrets/\n    age: [*admin_dan, *server_gw]\n",
    )
    repo.encrypt("secrets/gw.yaml", f"mail-password: {tok.rand(24)}\n")
    repo.encrypt("secrets/split.yaml", f"token: {tok.rand(24)}\n")
    repo.write(
        "flake.nix",
        "{\n  outputs = { self, nixpkgs }: {\n"
        "    nixosConfigurations.gw = nixpkgs.lib.nixosSystem { modules = [ ./nix/gateway ]; };\n  };\n}\n",
    )
    repo.write("nix/gateway/default.nix", "{ ... }: {\n  imports = [ ./mail.nix ];\n  sops.defaultSopsFile = ../../secrets/gw.yaml;\n}\n")
    repo.write(
        "nix/gateway/mail.nix",
        "{ config, ... }: {\n"
        "  sops.templates.\"mail.env\".content = ''\n"
        '    PASSWORD=${config.sops.placeholder."mail-password"}\n'
        "  '';\n"
        "  sops.secrets.token.sopsFile = ../../secrets/split.yaml;\n"
        "}\n",
    )
    found = host_findings(repo, "nix/gateway/mail.nix")
    # gw.yaml is readable; split.yaml needs a key from both groups (no shamir_threshold)
    assert [(f["path"], f["line"]) for f in found] == [("nix/gateway/mail.nix", 5)]
    assert "host gw cannot decrypt secrets/split.yaml" in str(found[0]["message"])

    config = (repo.root / ".sops.yaml").read_text()
    repo.write(".sops.yaml", config.replace("^secrets/", "^nothing/", 1).replace("^secrets/", "^elsewhere/"))
    found = host_findings(repo, ".sops.yaml")
    assert ("nix/gateway/mail.nix", 3) not in [(f["path"], f["line"]) for f in found]  # no rule: the metadata decides


def test_placeholder_of_an_unreadable_default_file(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient, host_in_platform=False)
    repo.write(
        "hosts/clarun/configuration.nix",
        "{ config, ... }:\n{\n  sops.defaultSopsFile = ../../secrets/secrets.yaml;\n"
        '  sops.templates."env".content = "TOKEN=${config.sops.placeholder.slack-bot-token}";\n'
        '  # sops.templates."old".content = "${config.sops.placeholder.gone}";\n}\n',
    )
    found = host_findings(repo, "hosts/clarun/configuration.nix")
    assert [(f["line"], "placeholder" in str(f["message"])) for f in found] == [(4, True)]


def test_only_what_the_commit_touches_is_reported(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient, host_in_project=False)
    repo.write("README.md", "ops\n")
    assert host_findings(repo, "README.md") == []
    assert len(host_findings(repo, "hosts/clarun/configuration.nix")) == 1  # the host reaches the module
    assert len(host_findings(repo, "secrets/projects/hello-bot/secrets.yaml")) == 1
    assert len(host_findings(repo, ".sops.yaml")) == 1


def test_staged_sops_yaml_that_drops_the_host_is_found(repo: OpsRepo) -> None:
    platform(repo, AgeKey.new().recipient)
    repo.write(".sops.yaml", sops_yaml(repo.operator.recipient, AgeKey.new().recipient).replace("host_clarun", "host_other"))
    assert host_findings(repo, "--staged") == []  # not staged yet: the commit would not change access
    repo.git("add", ".sops.yaml")
    found = host_findings(repo, "--staged")
    assert {(f["path"], f["line"]) for f in found} == {("hosts/clarun/configuration.nix", 6), ("modules/hello-bot.nix", 3)}
    assert all("no recipient in .sops.yaml" in str(f["message"]) for f in found)

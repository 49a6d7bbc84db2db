"""sops-nix references: a declared secret whose sops file lacks the key fails the check."""

from __future__ import annotations

from pathlib import Path

import guard_support as tok
from conftest import AgeKey, OpsRepo
from guard_support import findings


def setup_secrets(repo: OpsRepo) -> None:
    # clarun (whose files these tests use) reads the files: the host check has nothing to say
    repo.write(
        ".sops.yaml",
        f"keys:\n  - &admin_dan {repo.operator.recipient}\n  - &host_clarun {AgeKey.new().recipient}\n"
        "creation_rules:\n  - path_regex: ^secrets/\n    age: [*admin_dan, *host_clarun]\n",
    )
    repo.encrypt("secrets/main.yaml", f"slack:\n  bot_token: {tok.rand(30)}\nmatrix_token: {tok.rand(30)}\n")
    repo.encrypt("secrets/other.yaml", f"forgejo:\n  runner_token: {tok.rand(30)}\n")


HOST = """{ config, self, ... }:
{
  sops.defaultSopsFile = ../../secrets/main.yaml;
  sops.secrets."slack/bot_token" = { owner = "mautrix-slack"; };
  sops.secrets.matrix_token = {};
  sops.secrets."slack/app_token" = {};          # missing
  sops.secrets.runner = { sopsFile = "${self}/secrets/other.yaml"; key = "forgejo/runner_token"; };
  sops.secrets.typo = { sopsFile = ../../secrets/other.yaml; key = "forgejo/runer_token"; };
  sops.secrets.gone.sopsFile = ../../secrets/nope.yaml;
  sops.secrets.blob = { format = "binary"; sopsFile = ../../secrets/main.yaml; };
  services.foo.tokenFile = config.sops.secrets."not/declared/here".path;
  # sops.secrets."commented/out" = {};
  sops = {
    secrets = {
      "slack/signing_secret" = { };                 # missing
      matrix_token.owner = "conduwuit";
    };
  };
}
"""


def test_missing_keys_and_files_are_found(repo: OpsRepo) -> None:
    setup_secrets(repo)
    repo.write("hosts/clarun/default.nix", HOST)
    found = findings(repo, "hosts/clarun/default.nix")
    assert [(f["line"], f["rule"]) for f in found] == [
        (6, "sops-nix-missing-key"),
        (8, "sops-nix-missing-key"),
        (9, "sops-nix-missing-file"),
        (15, "sops-nix-missing-key"),
    ]
    assert "slack/app_token" in str(found[0]["message"])
    assert "secrets/main.yaml" in str(found[0]["message"])
    assert "forgejo/runer_token" in str(found[1]["message"])


def test_default_sops_file_set_in_another_module(repo: OpsRepo) -> None:
    setup_secrets(repo)
    repo.write("modules/sops.nix", "{ ... }: { sops.defaultSopsFile = ../secrets/main.yaml; }\n")
    repo.write("modules/bridge.nix", '{ ... }: {\n  sops.secrets."slack/bot_token" = {};\n  sops.secrets."slack/nope" = {};\n}\n')
    repo.git("add", ".")
    found = findings(repo, "modules/bridge.nix")
    assert [(f["path"], f["line"], f["rule"]) for f in found] == [("modules/bridge.nix", 3, "sops-nix-missing-key")]


def test_unresolvable_sops_file_is_not_guessed(repo: OpsRepo) -> None:
    setup_secrets(repo)
    repo.write(
        "hosts/x.nix",
        "{ config, ... }: {\n  sops.defaultSopsFile = ../secrets/${config.networking.hostName}.yaml;\n  sops.secrets.anything = {};\n}\n",
    )
    assert findings(repo, "hosts/x.nix") == []


def test_staged_nix_checks_staged_sops_file(repo: OpsRepo) -> None:
    setup_secrets(repo)
    repo.write("host.nix", '{ ... }: {\n  sops.defaultSopsFile = ./secrets/main.yaml;\n  sops.secrets."slack/bot_token" = {};\n}\n')
    repo.git("add", "host.nix")  # the sops file itself is not staged (nor committed)
    found = findings(repo, "--staged")
    assert [(f["path"], f["rule"]) for f in found] == [("host.nix", "sops-nix-missing-file")]
    repo.git("add", "secrets")
    assert findings(repo, "--staged") == []


def test_healthy_sops_nix_repository_has_no_finding(repo: OpsRepo, corpus: Path) -> None:
    """A real public .sops.yaml (NixOS/infra, public keys only), files sops wrote for it, Nix, a lock file."""
    import secrets as pysecrets

    repo.write(".sops.yaml", (corpus / "06-NixOS__infra.yaml").read_text())
    repo.encrypt("secrets/hydra-github-token.caliban", tok.rand(40))  # binary format
    block = "".join(f"    {line}\n" for line in tok.openssh_block().splitlines())
    repo.encrypt("secrets/caliban-hostkeys.yaml", f"ssh_host_ed25519_key: |\n{block}ssh_host_rsa_key: {tok.rand(40)}\n")
    # caliban itself reads only files of the *.caliban rule (the hostkeys rule is for admins)
    repo.encrypt("secrets/host.caliban.yaml", f"ssh_host_ed25519_key: |\n{block}")
    repo.write(
        "hosts/caliban/default.nix",
        """{ config, inputs, ... }:
{
  sops.defaultSopsFile = ../../secrets/host.caliban.yaml;
  sops.secrets.ssh_host_ed25519_key = { path = "/etc/ssh/ssh_host_ed25519_key"; };
  sops.secrets.hydra-github-token = {
    sopsFile = ../../secrets/hydra-github-token.caliban;
    format = "binary";
    owner = "hydra";
  };
  services.hydra.githubTokenFile = config.sops.secrets.hydra-github-token.path;
  users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI@KEY@ hexa" ];
}
""".replace("@KEY@", tok.rand(43)),
    )
    repo.write(
        "flake.lock",
        '{"nodes": {"nixpkgs": {"locked": {"narHash": "sha256-@HASH@=", "rev": "@REV@", "type": "github"}}}, "version": 7}\n'.replace(
            "@HASH@", tok.rand(43)
        ).replace("@REV@", pysecrets.token_hex(20)),
    )
    repo.write("README.md", "Set `SLACK_BOT_TOKEN=xoxb-your-token-here` and `SLACK_APP_TOKEN=xapp-...` in the bridge secrets.\n")
    repo.git("add", ".")
    for args in (("--all",), ("--staged",)):
        result = repo.ops("check", *args)
        assert (result.code, result.out) == (0, ""), (args, result)

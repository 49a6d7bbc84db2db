"""sops-nix references: a declared secret whose sops file lacks the key fails the check."""

from __future__ import annotations

import guard_support as tok
from conftest import OpsRepo
from guard_support import findings


def setup_secrets(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {repo.operator.recipient}\n")
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

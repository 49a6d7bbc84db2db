"""What restarts on deploy after a rotation (sops-nix restartUnits/reloadUnits, sops-nix#220)."""

from __future__ import annotations

from conftest import OpsRepo
from guard_support import slack_app
from rotation_support import Platform, make_platform

HOST = """{ config, ... }:
{
  sops.defaultSopsFile = ../../secrets/secrets.yaml;
  sops.secrets."slack-bot-token" = {
    owner = "mautrix-slack";
    restartUnits = [ "mautrix-slack.service" ];
  };
  sops.secrets."matrix-registration-token".reloadUnits = [ "conduwuit.service" ];
  sops.secrets."slack-app-token" = { owner = "mautrix-slack"; };
  sops.secrets."acme-email" = { };
}
"""


def platform_with_host(repo: OpsRepo) -> Platform:
    platform = make_platform(repo, commit=False)
    repo.write("hosts/clarun/configuration.nix", HOST)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "platform")
    return platform


def next_steps(out: str) -> list[str]:
    return [line.strip() for line in out.split("Next steps:", 1)[1].splitlines() if line.strip()]


def test_rotate_names_the_units_that_restart_on_deploy(repo: OpsRepo) -> None:
    platform_with_host(repo)
    r = repo.ops("rotate", "matrix-registration-token", "--generate", "--no-verify")
    assert r.code == 0, r
    steps = next_steps(r.out)
    assert steps[0].startswith("1. Deploy the new secret")
    assert steps[1] == (
        '2. On deploy sops-nix reloads conduwuit.service (sops.secrets."matrix-registration-token", hosts/clarun/configuration.nix:8)'
    )
    assert "nothing restarts" not in r.err


def test_rotate_warns_when_nothing_restarts_and_names_the_reader(repo: OpsRepo) -> None:
    platform_with_host(repo)
    r = repo.ops("rotate", "slack-app-token", "--stdin", "--no-verify", stdin=slack_app())
    assert r.code == 0, r
    assert "opssecrets: warning: nothing restarts on deploy" in r.err
    assert 'sops.secrets."slack-app-token" (hosts/clarun/configuration.nix:9) has no restartUnits' in r.err
    assert "mautrix-slack keeps the old value" in r.err
    assert "On deploy sops-nix" not in r.out


def test_rotate_of_an_undeclared_key_warns_too(repo: OpsRepo) -> None:
    make_platform(repo)  # no .nix files at all
    r = repo.ops("rotate", "matrix-registration-token", "--generate", "--no-verify")
    assert r.code == 0, r
    assert "nothing restarts on deploy: no .nix file declares it" in r.err
    assert "conduwuit keeps the old value" in r.err


def test_check_notes_token_secrets_without_restart_units(repo: OpsRepo) -> None:
    platform_with_host(repo)
    r = repo.ops("check", "hosts/clarun/configuration.nix")
    notes = [line for line in r.err.splitlines() if "restartUnits" in line]
    # slack-app-token is a token kind without units; acme-email is generic; the others have units
    assert len(notes) == 1, r
    assert notes[0].startswith("opssecrets: note: hosts/clarun/configuration.nix:9:")
    assert "sops-nix#220" in notes[0] and 'restartUnits = [ "mautrix-slack.service" ]' in notes[0]

"""Every runbook in docs/runbooks/ is run, command by command, against a throwaway repository.

The ```sh blocks of a runbook, in order, form one bash script (``set -euo pipefail``) run in
a repository built with the real ``opssecrets init`` and sops, shaped like ops-jrz1. The
world outside the repository is stood in for by real programs on PATH and a real HTTP server
on 127.0.0.1: ``ssh`` (the server clarun.xyz: prints its host key, accepts restarts),
``nixos-rebuild`` (a deploy: decrypts secrets/secrets.yaml with the host's SSH key converted
to age, as sops-nix does at activation, and fails if it cannot), Slack (revokes the old
tokens, accepts new ones) and the homeserver (accepts the registration token last deployed).
``opssecrets rotate`` without --stdin/--generate gets a real pseudo-terminal and a fresh token
typed at its hidden prompt. So a runbook whose commands drift from the tool fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import AgeKey, OpsRepo
from guard_support import slack_app, slack_bot
from rotation_support import PROJECT_ROOT, FakeService, fake_server, registration_token

from opssecrets.ledger import RotationLedger

RUNBOOKS = PROJECT_ROOT / "docs" / "runbooks"
TESTS = Path(__file__).resolve().parent
SECRETS = "secrets/secrets.yaml"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.S | re.M)


def sh_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is exactly ``sh``, in order."""
    return [body for info, body in _FENCE.findall(markdown) if info.strip() == "sh"]


OPSSECRETS_WRAPPER = """#!{python}
# The real CLI; an interactive `rotate` gets a pseudo-terminal and a fresh token at its prompt.
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import cli_argv
from guard_support import slack_app, slack_bot
from rotation_support import registration_token, run_in_pty
args = sys.argv[1:]
argv = cli_argv(*args)
if args[:1] == ["rotate"] and "--stdin" not in args and "--generate" not in args:
    key = args[1]
    answer = slack_bot() if "bot" in key else slack_app() if "app" in key else registration_token()
    code, shown = run_in_pty(argv, dict(os.environ), Path.cwd(), answer=answer)
    assert answer not in shown, "the value was echoed"
    sys.stdout.write(shown.replace("\\r\\n", "\\n"))
    sys.exit(code)
os.execv(sys.executable, argv)
"""

SSH_STUB = """#!{python}
# The server clarun.xyz, as far as the runbooks reach it over ssh.
import os, sys
from pathlib import Path
world = Path(os.environ["RUNBOOK_WORLD"])
with open(world / "ssh.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
command = " ".join(sys.argv[2:])
if "ssh_host_ed25519_key.pub" in command:
    sys.stdout.write((world / "host" / "ssh_host_ed25519_key.pub").read_text())
elif "journalctl" in command:
    print("mautrix-slack[1234]: Connected to Slack with Socket Mode")
"""

NIXOS_REBUILD_STUB = """#!{python}
# A deploy of the ops repository to clarun.xyz: sops-nix on the host decrypts the secrets
# with the host's SSH key converted to age; if it cannot, activation fails.
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import run_sops, sops_env
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from opssecrets.keys import ed25519_seed_to_x25519_private, identity_from_private_bytes
world = Path(os.environ["RUNBOOK_WORLD"])
with open(world / "deploy.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
key = load_ssh_private_key((world / "host" / "ssh_host_ed25519_key").read_bytes(), None)
identity = identity_from_private_bytes(ed25519_seed_to_x25519_private(key.private_bytes_raw()))
env = sops_env({{"SOPS_AGE_KEY": identity, "HOME": str(world / "host")}})
proc = run_sops("decrypt", "--output-type", "json", "secrets/secrets.yaml", cwd=Path.cwd(), env=env)
if proc.returncode != 0:
    sys.exit("activation failed: sops-nix on clarun.xyz cannot decrypt secrets/secrets.yaml")
values = json.loads(proc.stdout)
(world / "host" / "deployed-registration-token").write_text(values["matrix-registration-token"])
print("activating the configuration... done")
"""


@dataclass
class World:
    repo: OpsRepo
    dir: Path
    service: FakeService
    old_tokens: dict[str, str]

    @property
    def host_dir(self) -> Path:
        return self.dir / "host"

    def new_host_key(self) -> None:
        """The server is (re)installed: a fresh SSH host key."""
        self.host_dir.mkdir(exist_ok=True)
        for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
            (self.host_dir / name).unlink(missing_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "root@clarun",
                "-f",
                str(self.host_dir / "ssh_host_ed25519_key"),
            ],
            check=True,
        )

    def value(self, key: str, identity: AgeKey | None = None) -> str:
        proc = self.repo.sops("decrypt", "--extract", f'["{key}"]', SECRETS, identity=identity)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode()

    def recipients(self) -> str:
        return (self.repo.root / ".sops.yaml").read_text()

    def run(self, runbook: Path) -> subprocess.CompletedProcess[str]:
        blocks = sh_blocks(runbook.read_text())
        script = self.dir / f"{runbook.stem}.sh"
        script.write_text("set -euo pipefail\nset -x\n" + "\n".join(blocks))
        env = dict(os.environ)
        env.update(
            {
                "PATH": f"{self.dir / 'bin'}{os.pathsep}{env['PATH']}",
                "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(TESTS)]),
                "RUNBOOK_WORLD": str(self.dir),
                "OPSSECRETS_SLACK_API_URL": self.service.url + "/api",
                "OPSSECRETS_HOMESERVER": self.service.url,
                "SOPS_AGE_KEY": self.repo.operator.identity,
            }
        )
        return subprocess.run(["bash", str(script)], cwd=self.repo.root, env=env, capture_output=True, text=True, timeout=300, check=False)


def _install_stubs(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, template in (("opssecrets", OPSSECRETS_WRAPPER), ("ssh", SSH_STUB), ("nixos-rebuild", NIXOS_REBUILD_STUB)):
        path = bin_dir / name
        path.write_text(template.format(python=sys.executable, tests=str(TESTS)))
        path.chmod(0o755)


@pytest.fixture
def world(repo: OpsRepo, tmp_path: Path) -> Iterator[World]:
    """ops-jrz1 in miniature: admin dan (the operator), host clarun, the three tokens."""
    world_dir = tmp_path / "world"
    world_dir.mkdir()
    _install_stubs(world_dir / "bin")
    with fake_server() as service:
        w = World(repo, world_dir, service, {})
        w.new_host_key()
        r = repo.ops(
            "init", "--admin", "dan", "--age-key", repo.operator.recipient,
            "--host", "clarun", "--ssh-host-key", str(w.host_dir / "ssh_host_ed25519_key.pub"),
        )  # fmt: skip
        assert r.code == 0, r
        w.old_tokens = {
            "slack-app-token": slack_app(),
            "slack-bot-token": slack_bot(),
            "matrix-registration-token": registration_token(),
        }
        repo.encrypt(SECRETS, "".join(f"{k}: {v}\n" for k, v in w.old_tokens.items()))
        repo.git("add", "-A")
        repo.git("commit", "-qm", "ops-jrz1")
        # Slack revokes the old tokens once new ones are made; the homeserver knows what is deployed
        service.accept_any = True
        service.revoked = {w.old_tokens["slack-app-token"], w.old_tokens["slack-bot-token"]}
        service.deployed_file = w.host_dir / "deployed-registration-token"
        service.deployed_file.write_text(w.old_tokens["matrix-registration-token"])
        yield w


def _git_clean(world: World) -> None:
    status = world.repo.git("status", "--porcelain")
    assert status == "", f"the runbook left uncommitted changes:\n{status}"


# --- one scenario per runbook: the state before, and what must hold after ------------------------


def _rotate_slack_tokens(world: World) -> Callable[[], None]:
    def after() -> None:
        for key in ("slack-app-token", "slack-bot-token"):
            assert world.value(key) != world.old_tokens[key]
        assert world.value("matrix-registration-token") == world.old_tokens["matrix-registration-token"]
        ssh_log = (world.dir / "ssh.log").read_text()
        assert "systemctl restart mautrix-slack" in ssh_log
        ledger = json.loads((world.repo.root / ".opssecrets/ledger.json").read_text())
        assert set(ledger["files"][SECRETS]["keys"]) == {"slack-app-token", "slack-bot-token"}
        _git_clean(world)

    return after


def _rotate_matrix_token(world: World) -> Callable[[], None]:
    def after() -> None:
        new = world.value("matrix-registration-token")
        assert new != world.old_tokens["matrix-registration-token"]
        assert (world.host_dir / "deployed-registration-token").read_text() == new
        assert "systemctl restart conduwuit" in (world.dir / "ssh.log").read_text()
        _git_clean(world)

    return after


def _offboard_engineer(world: World) -> Callable[[], None]:
    alice = AgeKey.new()
    assert world.repo.ops("add-engineer", "alice", "--admin", "--age-key", alice.recipient).code == 0
    world.repo.git("commit", "-qam", "alice joins")
    assert world.repo.decrypt(SECRETS, identity=alice).returncode == 0

    def after() -> None:
        assert alice.recipient not in world.recipients()
        assert world.repo.decrypt(SECRETS, identity=alice).returncode != 0
        for key, old in world.old_tokens.items():
            assert world.value(key) != old, key
        r = world.repo.ops("status", "--strict")
        assert r.code == 0, r
        _git_clean(world)

    return after


def _replace_host_key(world: World) -> Callable[[], None]:
    old_key = (world.host_dir / "ssh_host_ed25519_key.pub").read_text()
    world.new_host_key()  # clarun was reinstalled: its old key is gone

    def after() -> None:
        from opssecrets.keys import parse_ssh_public_key

        new_recipient = parse_ssh_public_key((world.host_dir / "ssh_host_ed25519_key.pub").read_text()).age_recipient
        assert new_recipient in world.recipients()
        assert parse_ssh_public_key(old_key).age_recipient not in world.recipients()
        assert "switch" in (world.dir / "deploy.log").read_text()  # the deploy decrypted with the new key
        r = world.repo.ops("status", "--strict")
        assert r.code == 0, r  # a reinstall exposes nothing
        _git_clean(world)

    return after


def _recover_lost_admin_key(world: World) -> Callable[[], None]:
    lost = AgeKey.new()
    assert world.repo.ops("add-engineer", "erin", "--admin", "--age-key", lost.recipient).code == 0
    world.repo.git("commit", "-qam", "erin joins as admin")
    home = Path(os.environ["HOME"])

    def after() -> None:
        assert lost.recipient not in world.recipients()
        key_file = home / ".config/sops/age/keys.txt"
        new = AgeKey(re.search(r"AGE-SECRET-KEY-1\S+", key_file.read_text()).group(0), "")  # type: ignore[union-attr]
        # sops also reads its default key file, which now holds erin's new key: move it aside
        key_file.rename(key_file.with_suffix(".aside"))
        assert world.repo.decrypt(SECRETS, identity=new).returncode == 0  # erin reads again
        assert world.repo.decrypt(SECRETS, identity=lost).returncode != 0
        r = world.repo.ops("status", "--strict")
        assert r.code == 0, r
        _git_clean(world)

    return after


def _audit_after_offboarding(world: World) -> Callable[[], None]:
    """alice was an admin and was removed by hand: her lines deleted from .sops.yaml and
    `sops updatekeys` run, no data-key rotation, no new values."""
    alice = AgeKey.new()
    assert world.repo.ops("add-engineer", "alice", "--admin", "--age-key", alice.recipient).code == 0
    world.repo.git("commit", "-qam", "alice joins")
    with_alice = world.repo.git("rev-parse", "HEAD").strip()
    config = world.repo.root / ".sops.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True) if "admin_alice" not in line))
    assert world.repo.sops("updatekeys", "-y", SECRETS).returncode == 0
    world.repo.git("commit", "-qam", "alice leaves (by hand)")
    before = json.loads(world.repo.ops("exposure", "--json").out)
    assert {(e["reader"], e["how"]) for e in before["exposures"]} == {("alice", "same value"), ("alice", "same data key")}

    def after() -> None:
        for key, old in world.old_tokens.items():
            assert world.value(key) != old, key
        # alice's wrapped data key from her last version no longer opens today's file
        old_meta = yaml.safe_load(world.repo.git("show", f"{with_alice}:{SECRETS}"))["sops"]
        today = yaml.safe_load((world.repo.root / SECRETS).read_text())
        stanza = next(e for g in old_meta.get("key_groups") or [old_meta] for e in g["age"] if e["recipient"] == alice.recipient)
        (today["sops"].get("key_groups") or [today["sops"]])[0]["age"].append(stanza)
        spliced = world.repo.write("spliced.yaml", yaml.safe_dump(today))
        assert world.repo.sops("decrypt", str(spliced), identity=alice).returncode != 0
        spliced.unlink()
        assert world.repo.ops("exposure", "--strict").code == 0
        _git_clean(world)

    return after


def _status_reminders(world: World) -> Callable[[], None]:
    # step 1 of the runbook is done by hand in an editor (sops edit): the bot's token is stored
    bot = "syt_" + registration_token()
    plaintext = "".join(f"{k}: {v}\n" for k, v in world.old_tokens.items()) + f"matrix-notify-token: {bot}\n"
    world.repo.encrypt(SECRETS, plaintext)
    world.repo.git("commit", "-qam", "the notification bot's token")
    # the registration token is overdue: the reminder has something to say
    ledger = RotationLedger.load(world.repo.root)
    ledger.record_rotation(SECRETS, "matrix-registration-token", when=datetime.now(UTC) - timedelta(days=120), by="dan", reason="x")
    ledger.save()
    world.repo.git("add", "-A")
    world.repo.git("commit", "-qm", "ledger")

    def after() -> None:
        posts = [r for r in world.service.requests if r["method"] == "PUT"]
        assert len(posts) == 1, posts  # the setup check (--notify-always); the timer runs the same code
        for post in posts:
            assert post["path"].startswith("/_matrix/client/v3/rooms/!ops:clarun.xyz/send/m.room.message/")
            assert post["auth"] == f"Bearer {bot}"
            assert "1 overdue" in post["body"]["body"] and "matrix-registration-token" in post["body"]["body"]
            assert bot not in post["body"]["body"]
            for value in world.old_tokens.values():
                assert value not in post["body"]["body"]
        _git_clean(world)

    return after


SCENARIOS: dict[str, Callable[[World], Callable[[], None]]] = {
    "audit-after-offboarding.md": _audit_after_offboarding,
    "status-reminders.md": _status_reminders,
    "rotate-slack-tokens.md": _rotate_slack_tokens,
    "rotate-matrix-registration-token.md": _rotate_matrix_token,
    "offboard-engineer.md": _offboard_engineer,
    "replace-host-key.md": _replace_host_key,
    "recover-lost-admin-key.md": _recover_lost_admin_key,
}


def test_every_runbook_has_a_scenario_and_commands() -> None:
    found = sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert found == sorted(SCENARIOS)
    for name in found:
        blocks = sh_blocks((RUNBOOKS / name).read_text())
        assert any("opssecrets " in block for block in blocks), name


def test_sh_blocks_extraction() -> None:
    text = "intro\n```sh\necho one\n```\n```text\nnot run\n```\n```sh\necho two\n```\n"
    assert sh_blocks(text) == ["echo one\n", "echo two\n"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_runbook_runs_against_a_throwaway_repository(world: World, name: str) -> None:
    after = SCENARIOS[name](world)
    proc = world.run(RUNBOOKS / name)
    assert proc.returncode == 0, f"{name} failed:\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    after()
    # no value ever reached the terminal output of a runbook
    for key in ("slack-app-token", "slack-bot-token", "matrix-registration-token"):
        current = world.value(key)
        assert current not in proc.stdout + proc.stderr
    assert yaml.safe_load((world.repo.root / ".sops.yaml").read_text())["creation_rules"]

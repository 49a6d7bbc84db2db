"""A throwaway ops repository in the platform's layout, and the secrets lifecycle run on it.

Everything is generated at run time: the admin's (``dan``) and an engineer's (``alice``) age
identities, the host ``clarun``'s SSH ed25519 host key (converted as sops-nix converts
it), and fake token values. Identities live in ``DIR/.demo/keys`` (git-ignored); the
children run with ``SOPS_AGE_KEY_FILE`` pointing there, ``XDG_CONFIG_HOME`` inside the demo
directory and keyring's null backend, so the user's keyring and ``~/.config`` are never
read or written.

The lifecycle is a list of :class:`DemoStep`; a step whose command is not in this build
(rotation, status and the guard arrive with their own issues) is skipped with a note, so
each of those switches on by existing.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opssecrets.errors import BadInput, ToolFailed
from opssecrets.identity import USER_IDENTITY_VARS, identity_from_openssh, keys_txt, write_private_file
from opssecrets.keys import generate_identity, parse_ssh_public_key, recipient_for_identity
from opssecrets.sops import RECIPIENT_ENV_VARS, find_sops, run, stderr_summary

ADMIN = "dan"
ENGINEER = "alice"
HOST = "clarun"
PROJECT = "hello-bot"
HOST_SECRETS = "secrets/secrets.yaml"
PROJECT_SECRETS = f"projects/{PROJECT}/secrets.yaml"
PLANTED = f"projects/{PROJECT}/config.env"
STEP_TIMEOUT = 300.0

Write = Callable[[str], None]
Available = Callable[[str], bool]


@dataclass(frozen=True)
class DemoStep:
    """One command of the lifecycle: what it shows, its arguments, and whose identity runs it."""

    say: str
    args: tuple[str, ...]
    as_user: str = ADMIN
    expect: tuple[int, ...] = (0,)
    after: tuple[str, ...] = ()  # earlier commands whose effect this step shows

    @property
    def command(self) -> str:
        return self.args[0]

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.command, *self.after)


@dataclass
class DemoRepo:
    root: Path
    keys: dict[str, Path] = field(default_factory=dict)  # name -> identity file (keys.txt)
    recipients: dict[str, str] = field(default_factory=dict)  # name -> age1...

    @property
    def state(self) -> Path:
        return self.root / ".demo"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def fake_values() -> dict[str, str]:
    """Fake secret values in the shapes the real ones have, made fresh on every run."""
    digits, alnum = string.digits, string.ascii_letters + string.digits
    return {
        "matrix-registration-token": _random(alnum, 32),
        "acme-email": "admin@clarun.xyz",
        "slack-app-token": "-".join(
            ["xapp", "1", "A" + _random(string.ascii_uppercase + digits, 10), _random(digits, 13), _random("abcdef" + digits, 64)]
        ),
        "slack-bot-token": "-".join(["xoxb", _random(digits, 13), _random(digits, 13), _random(alnum, 24)]),
    }


def prepare_dir(target: Path | None) -> Path:
    """A new temp dir, or ``target`` if it does not exist or is empty (refused otherwise)."""
    if target is None:
        return Path(tempfile.mkdtemp(prefix="opssecrets-demo-")).resolve()
    if target.exists():
        if not target.is_dir():
            raise BadInput(f"{target} is a file; give a new or empty directory for the demo")
        if any(target.iterdir()):
            raise BadInput(f"{target} is not empty; give a new or empty directory (the demo creates a whole repository)")
    target.mkdir(parents=True, exist_ok=True)
    return target.resolve()


def child_env(demo: DemoRepo, as_user: str) -> dict[str, str]:
    """The environment of every demo child: the user's minus identity/recipient variables, plus the demo's."""
    env = {key: value for key, value in os.environ.items() if key not in USER_IDENTITY_VARS and key not in RECIPIENT_ENV_VARS}
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env["SOPS_AGE_KEY_FILE"] = str(demo.keys[as_user])
    env["XDG_CONFIG_HOME"] = str(demo.state / "config")  # sops' default key file and keyring config, inside the demo
    env["XDG_STATE_HOME"] = str(demo.state / "state")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


def _git(root: Path, *args: str) -> None:
    proc = subprocess.run(
        ["git", "-c", "user.name=opssecrets demo", "-c", "user.email=demo@example.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=root,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise ToolFailed(f"git {args[0]} failed in the demo repository: {stderr_summary(proc.stderr)}")


def _new_identity(demo: DemoRepo, name: str, identity: str) -> None:
    path = demo.state / "keys" / f"{name}.txt"
    write_private_file(path, keys_txt(identity))
    demo.keys[name] = path
    demo.recipients[name] = recipient_for_identity(identity)


def _host_key(demo: DemoRepo) -> None:
    """clarun's SSH host key pair; its age identity converted as sops-nix does on the host."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = Ed25519PrivateKey.generate()
    folder = demo.state / "hosts" / HOST
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    write_private_file(folder / "ssh_host_ed25519_key", private.decode())
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" root@{HOST}"
    (folder / "ssh_host_ed25519_key.pub").write_text(public + "\n")
    identity = identity_from_openssh(private, "the demo host key")
    _new_identity(demo, HOST, identity)
    assert demo.recipients[HOST] == parse_ssh_public_key(public).age_recipient


def _yaml_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(demo: DemoRepo) -> None:
    """``.sops.yaml``: host secrets for dan and clarun; the project's also for its engineers (none yet)."""
    r = demo.recipients
    text = (
        "# Recipients of this ops repository (managed with opssecrets).\n"
        "keys:\n"
        f"  - &{ADMIN} {r[ADMIN]}\n"
        f"  - &{HOST} {r[HOST]}\n"
        "creation_rules:\n"
        "  - path_regex: ^secrets/[^/]+\\.yaml$\n"
        "    key_groups:\n"
        "      - age:\n"
        f"          - *{ADMIN}\n"
        f"          - *{HOST}\n"
        f"  - path_regex: ^projects/{PROJECT}/[^/]+\\.yaml$\n"
        "    key_groups:\n"
        "      - age:\n"
        f"          - *{ADMIN}\n"
        f"          - *{HOST}\n"
    )
    (demo.root / ".sops.yaml").write_text(text)


def encrypt_new(demo: DemoRepo, rel: str, plaintext: str) -> None:
    """Encrypt a new file with the real sops: the plaintext goes in on stdin, never to disk."""
    sops = find_sops()
    path = demo.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = run(
        sops,
        (
            "--config",
            str(demo.root / ".sops.yaml"),
            "encrypt",
            "--filename-override",
            rel,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "/dev/stdin",
        ),
        cwd=demo.root,
        stdin=plaintext.encode(),
        env=child_env(demo, ADMIN),
    )
    if proc.returncode != 0:
        raise ToolFailed(f"sops could not encrypt the demo's {rel}: {stderr_summary(proc.stderr)}", stderr_summary(proc.stderr))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(proc.stdout)


def build_repo(root: Path) -> DemoRepo:
    """The throwaway repository in the prepared ``root``: keys, ``.sops.yaml``, encrypted secrets, a commit."""
    demo = DemoRepo(root)
    _git(demo.root, "init", "-q")
    (demo.root / ".gitignore").write_text("# the demo's private keys: never in git\n/.demo/\n")
    _new_identity(demo, ADMIN, generate_identity())
    _new_identity(demo, ENGINEER, generate_identity())
    _host_key(demo)
    write_config(demo)
    values = fake_values()
    encrypt_new(demo, HOST_SECRETS, "".join(f"{key}: {_yaml_quote(value)}\n" for key, value in values.items()))
    project_values = {"matrix-access-token": "syt_" + _random(string.ascii_letters, 20), "greeting": "Hello from Matrix!"}
    encrypt_new(demo, PROJECT_SECRETS, "".join(f"{key}: {_yaml_quote(value)}\n" for key, value in project_values.items()))
    bot = demo.root / "projects" / PROJECT / "module.nix"
    bot.write_text(
        "{ config, ... }:\n{\n"
        f'  sops.secrets."matrix-access-token".sopsFile = ./secrets.yaml;\n'
        f'  systemd.services.{PROJECT}.serviceConfig.EnvironmentFile = config.sops.secrets."matrix-access-token".path;\n'
        "}\n"
    )
    host = demo.root / "hosts" / HOST / "secrets.nix"
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(
        "{\n  sops.defaultSopsFile = ../../secrets/secrets.yaml;\n"
        '  sops.age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];\n'
        + "".join(f'  sops.secrets."{key}" = {{ }};\n' for key in values)
        + "}\n"
    )
    _git(demo.root, "add", "-A")
    _git(demo.root, "commit", "-q", "-m", "A throwaway ops repository made by 'opssecrets demo'")
    return demo


def plant_leak(demo: DemoRepo) -> Path:
    """A config file with a Slack bot token pasted in plaintext, as happens, for the guard to catch."""
    path = demo.root / PLANTED
    token = fake_values()["slack-bot-token"]
    path.write_text(f"MATRIX_HOMESERVER=https://clarun.xyz\nSLACK_BOT_TOKEN={token}\n")
    return path


def lifecycle(demo: DemoRepo) -> list[DemoStep]:
    """The steps, in order. A step runs only when its command exists in this build."""
    alice = demo.recipients[ENGINEER]
    return [
        DemoStep(
            f"{ENGINEER} ran 'opssecrets identity new --name {ENGINEER}' and sent {ADMIN} this command:",
            ("add-engineer", ENGINEER, "--age-key", alice),
        ),
        DemoStep(f"{ADMIN} gives {ENGINEER} the {PROJECT} project's secrets:", ("grant", ENGINEER, PROJECT)),
        DemoStep("Who can read what:", ("access",)),
        DemoStep(
            f"{ENGINEER} checks her setup; her identity now reads the {PROJECT} secrets:",
            ("doctor",),
            as_user=ENGINEER,
            after=("add-engineer",),
        ),
        DemoStep("Rotate the Matrix registration token (a new value, a new data key):", ("rotate", "matrix-registration-token")),
        DemoStep("Which secrets are due for rotation:", ("status",), expect=(0, 1)),
        DemoStep(f"{ENGINEER} leaves the team:", ("remove-engineer", ENGINEER)),
        DemoStep(
            f"{ENGINEER}'s identity reads nothing any more:",
            ("doctor",),
            as_user=ENGINEER,
            expect=(1,),
            after=("remove-engineer",),
        ),
        DemoStep(f"The values {ENGINEER} could read, to rotate now that she has gone:", ("exposed", ENGINEER)),
        DemoStep("The pre-commit guard catches a token pasted into a config file:", ("check", PLANTED), expect=(1,)),
    ]


def display(args: tuple[str, ...]) -> str:
    import shlex

    return "opssecrets " + " ".join(shlex.quote(arg) for arg in args)


def run_step(demo: DemoRepo, step: DemoStep, write: Write) -> int:
    """Print the command, run it as a real process, print its output; return its exit code."""
    who = f"(as {step.as_user}) " if step.as_user != ADMIN else ""
    write(f"\n# {step.say}\n{who}$ {display(step.args)}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "opssecrets", "--repo", str(demo.root), *step.args],
        cwd=demo.root,
        env=child_env(demo, step.as_user),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace")
    if output:
        write(output if output.endswith("\n") else output + "\n")
    if proc.returncode not in step.expect:
        wanted = " or ".join(map(str, step.expect))
        raise ToolFailed(
            f"demo step '{display(step.args)}' exited {proc.returncode} (expected {wanted}); see its output above; "
            f"the repository is left at {demo.root}"
        )
    return proc.returncode


def run_demo(target: Path | None, write: Write, available: Available) -> DemoRepo:
    """Build the repository, run every available lifecycle step, and say what to try next."""
    root = prepare_dir(target)
    write("Building a throwaway ops repository with real sops and freshly generated keys...\n")
    demo = build_repo(root)
    write(
        f"  {demo.root}\n"
        f"  admin {ADMIN}, engineer-to-be {ENGINEER}, host {HOST} (age key from its SSH host key)\n"
        f"  {HOST_SECRETS}: matrix-registration-token, acme-email, slack-app-token, slack-bot-token\n"
        f"  {PROJECT_SECRETS}: the {PROJECT} project's secrets\n"
        f"  identities in {demo.rel(demo.state / 'keys')}/ (git-ignored); your own keyring and ~/.config are not used\n"
    )
    skipped: list[str] = []
    for step in lifecycle(demo):
        if step.command == "check" and available("check"):
            plant_leak(demo)
        missing = [name for name in step.needs if not available(name)]
        if missing:
            skipped.extend(missing)
            continue
        run_step(demo, step, write)
    if skipped:
        write(f"\n(not in this build yet, so not shown: {', '.join(dict.fromkeys(skipped))})\n")
    key_file = demo.keys[ADMIN]
    write(
        "\nThe demo repository is at:\n"
        f"  {demo.root}\n"
        "Try next (as the admin):\n"
        f"  cd {demo.root}\n"
        f"  export SOPS_AGE_KEY_FILE={key_file}\n"
        "  opssecrets access\n"
        "  opssecrets doctor\n"
        "  opssecrets share slack-bot-token --to clarun | head -3\n"
        f"Delete it with: rm -rf {demo.root}\n"
    )
    return demo

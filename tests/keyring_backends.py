"""A real keyring backend for tests, chosen through keyring's own configuration.

``PYTHON_KEYRING_BACKEND=keyring_backends.FileKeyring`` with ``OPSSECRETS_TEST_KEYRING``
naming a JSON file in the test's temp dir: keyring loads it exactly as it loads the OS
backends, so opssecrets' code runs unchanged, in-process or in a child process (the
child's ``PYTHONPATH`` must include this folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError

STORE_VAR = "OPSSECRETS_TEST_KEYRING"
BACKEND_NAME = "keyring_backends.FileKeyring"


class FileKeyring(KeyringBackend):
    """Secrets in a JSON file (mode 0600) named by ``$OPSSECRETS_TEST_KEYRING``. Tests only."""

    priority = 1

    @staticmethod
    def _path() -> Path:
        return Path(os.environ[STORE_VAR])

    def _load(self) -> dict[str, dict[str, str]]:
        path = self._path()
        if not path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        path = self._path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError("not found")
        del data[service][username]
        self._save(data)


class LockedKeyring(KeyringBackend):
    """A keyring that is there but refuses every read, like a locked Secret Service collection."""

    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("the collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("the collection is locked")


class RecordingKeyring(FileKeyring):
    """A FileKeyring that logs every call to ``$OPSSECRETS_TEST_KEYRING.log``: proves who touched it."""

    def _record(self, what: str) -> None:
        with open(f"{self._path()}.log", "a") as log:
            log.write(what + "\n")

    def get_password(self, service: str, username: str) -> str | None:
        self._record("get")
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._record("set")
        super().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self._record("delete")
        super().delete_password(service, username)

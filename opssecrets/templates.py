"""The text of a new ``.sops.yaml`` in the platform layout (sops-nix README style)."""

from __future__ import annotations

HEADER = """\
# Who can read which secrets. Managed with opssecrets (hand edits and comments are kept).
# Roles by anchor prefix: admin_* read every rule; host_* are servers (their SSH host key
# converted to age, as sops-nix decrypts with it); other names are engineers.
"""

PLATFORM_RULE = r"^secrets/[^/]+\.(yaml|json|env|ini)$"


def initial_config(admin: str, admin_key: str, host: str | None, host_key: str | None) -> str:
    keys = [f"  - &admin_{admin} {admin_key}"]
    readers = [f"          - *admin_{admin}"]
    if host is not None and host_key is not None:
        keys.append(f"  - &host_{host} {host_key}")
        readers.append(f"          - *host_{host}")
    return (
        HEADER
        + "keys:\n"
        + "\n".join(keys)
        + "\ncreation_rules:\n"
        + "  # platform secrets (secrets/secrets.yaml and its siblings), read by the host at activation\n"
        + f"  - path_regex: {PLATFORM_RULE}\n"
        + "    key_groups:\n"
        + "      - age:\n"
        + "\n".join(readers)
        + "\n"
    )

"""opssecrets: run the secrets of a sops-nix ops repository."""

__version__ = "0.1.0"

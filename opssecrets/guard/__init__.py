"""The guard behind ``opssecrets check``: leak rules, the scanner, sops file checks.

Library entry point: ``from opssecrets.guard.engine import CheckOptions, run_check``;
``run_check(root, CheckOptions(paths=("secrets/x.yaml",)))`` returns a ``CheckReport``.
"""

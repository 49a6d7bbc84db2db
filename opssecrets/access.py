"""Who should read each encrypted file (its rule) against who can (its own metadata)."""

from __future__ import annotations

from typing import Any

from opssecrets.repo import Repo
from opssecrets.rules import matching_rule
from opssecrets.secretfile import drift
from opssecrets.sopsconfig import SopsConfig


def file_access(repo: Repo, config: SopsConfig, only: list[str] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for secret in repo.secret_files(only):
        rel = repo.relpath(secret.path)
        rule = matching_rule(config.rules, rel)
        can = sorted(config.label_for_key(k) for k in secret.metadata.age_recipients)
        if rule is None:
            rows.append({"file": rel, "rule": None, "should_read": [], "can_read": can, "differs": True, "missing": [], "extra": can})
            continue
        should = sorted(config.label_for_key(k) for k in rule.age_recipients)
        wanted, have = set(rule.age_recipients), secret.metadata.age_recipients
        rows.append(
            {
                "file": rel,
                "rule": rule.index + 1,
                "should_read": should,
                "can_read": can,
                "differs": drift(rule, secret.metadata) is not None,
                "missing": sorted(config.label_for_key(k) for k in wanted - have),
                "extra": sorted(config.label_for_key(k) for k in have - wanted),
            }
        )
    return rows

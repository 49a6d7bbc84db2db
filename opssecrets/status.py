"""``status``: how old each secret's value is against its kind's limit, and whether a reader
who should no longer have it could (the ledger's exposures, the last exposure audit's
findings). Reads metadata and the ledger only; never decrypts, never calls sops.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from opssecrets.exposure import saved_exposures
from opssecrets.ledger import RotationLedger, format_time, now_utc, parse_time
from opssecrets.policy import Policy
from opssecrets.repo import Repo

DUE_WINDOW_DAYS = 14
STATES = ("exposed", "overdue", "due", "unknown", "ok")  # worst first


@dataclass(frozen=True)
class StatusRow:
    file: str
    key: str
    kind: str
    rotated_at: str | None
    age_days: int | None
    max_age_days: int | None
    state: str
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "key": self.key,
            "kind": self.kind,
            "rotated_at": self.rotated_at,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "state": self.state,
        }


def _state(age_days: int | None, max_age_days: int | None) -> str:
    if max_age_days is None or age_days is None:
        return "ok"
    if age_days > max_age_days:
        return "overdue"
    if age_days >= max_age_days - DUE_WINDOW_DAYS:
        return "due"
    return "ok"


def status_rows(repo: Repo, policy: Policy, ledger: RotationLedger, now: datetime | None = None) -> list[StatusRow]:
    """One row per key of every encrypted file, worst first. Reads metadata only, no sops."""
    now = now or now_utc()
    rows: list[StatusRow] = []
    for secret_file in repo.secret_files():
        relpath = repo.relpath(secret_file.path)
        lastmodified: datetime | None = None
        if secret_file.metadata.lastmodified:
            with contextlib.suppress(ValueError):
                lastmodified = parse_time(secret_file.metadata.lastmodified)
        # findings of the last `opssecrets exposure`, kept until the value (or data key) changes
        from_history = saved_exposures(repo, relpath, secret_file.tree, secret_file.path)
        for key in secret_file.key_paths():
            kind = policy.kind_for_key(key)
            record = ledger.get(relpath, key)
            rotated = record.rotated_at if record else None
            if rotated is not None:
                age: int | None = max(0, (now - rotated).days)
                state = _state(age, kind.max_age_days)
                note = f"by {record.by}" if record and record.by else ""
            else:
                age = max(0, (now - lastmodified).days) if lastmodified else None
                state = "unknown"
                note = (
                    "never rotated through opssecrets; age from the file's sops lastmodified"
                    if lastmodified
                    else "no lastmodified"
                )
            if record is not None and record.exposed:
                state = "exposed"
                note = "exposed to " + ", ".join(f"{e.reader} since {format_time(e.since)[:10]}" for e in record.exposed_to)
            if key in from_history:
                state = "exposed"
                earlier = [note] if record is not None and record.exposed else []
                note = "; ".join([*earlier, "history: " + ", ".join(from_history[key])])
            rows.append(
                StatusRow(relpath, key, kind.name, format_time(rotated) if rotated else None, age, kind.max_age_days, state, note)
            )
    rows.sort(key=_severity)
    return rows


def _severity(row: StatusRow) -> tuple[int, int, str, str]:
    overdue_by = (row.age_days or 0) - (row.max_age_days or 0) if row.max_age_days else -(10**6)
    return (STATES.index(row.state), -overdue_by, row.file, row.key)

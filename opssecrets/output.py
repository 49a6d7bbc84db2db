"""Rows produced once, rendered one way: a table for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    from tabulate import tabulate

    if not rows:
        return "(none)"
    table = [[_cell(row.get(col)) for col in columns] for row in rows]
    return tabulate(table, headers=list(headers or columns), tablefmt="simple", disable_numparse=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(v) for v in value) if value else "-"
    return str(value)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def emit(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool, key: str, headers: Sequence[str] | None = None
) -> None:
    if as_json:
        emit_json({key: list(rows)})
    else:
        sys.stdout.write(render_table(rows, columns, headers) + "\n")


def progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr, only when stderr is a terminal and the job is big."""
    if total <= 5 or not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()

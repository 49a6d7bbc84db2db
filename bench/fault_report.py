"""Run the fault-injection tests and print the counts as the table in docs/reliability.md.

    python bench/fault_report.py            # runs tests/test_fault_injection.py (about 4 minutes)
    python bench/fault_report.py FILE.json  # formats a report written earlier

The tests write their counts to $OPSSECRETS_FAULT_REPORT (JSON); this script sets it, runs
pytest, and formats the result. By hand only, like the other bench/ scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run() -> tuple[dict[str, dict[str, object]], float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.json"
        env = dict(os.environ, OPSSECRETS_FAULT_REPORT=str(report))
        start = time.perf_counter()
        argv = [sys.executable, "-m", "pytest", "tests/test_fault_injection.py", "-q", "-p", "no:cacheprovider"]
        proc = subprocess.run(argv, cwd=ROOT, env=env, check=False)
        seconds = time.perf_counter() - start
        data = json.loads(report.read_text()) if report.exists() else {}
    return data, seconds, proc.returncode


def table(data: dict[str, dict[str, object]]) -> str:
    lines = [
        "| scenario | faults injected | sops calls in one run | file checks | re-run exit 2 \"already done\" | failures | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    totals = [0, 0, 0]
    for name, row in data.items():
        kills, checks, failures = int(row["kills"]), int(row["files_checked"]), int(row["failures"])  # type: ignore[call-overload]
        totals[0] += kills
        totals[1] += checks
        totals[2] += failures
        lines.append(
            f"| {name} | {kills} | {row.get('sops_calls_in_a_run', '-')} | {checks} | {row.get('rerun_exit_2_already_done', '-')} "
            f"| {failures} | {row['seconds']} |"
        )
    lines.append(f"| **total** | **{totals[0]}** | | **{totals[1]}** | | **{totals[2]}** | |")
    lines += ["", "What the kills left before the re-run:", "", "| scenario | state after the kill | kills |", "|---|---|---:|"]
    for name, row in data.items():
        landed = row.get("state_after_kill") or {}
        assert isinstance(landed, dict)
        lines += [f"| {name} | {state} | {count} |" for state, count in landed.items()]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1:
        print(table(json.loads(Path(sys.argv[1]).read_text())))
        return 0
    data, seconds, code = run()
    print(table(data))
    print(f"\npytest exit {code}; the whole file took {seconds:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

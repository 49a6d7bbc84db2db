#!/usr/bin/env bash
# Quick start, command 2: set up, then run every check: ruff, mypy --strict, the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check opssecrets tests bench
.venv/bin/mypy --strict opssecrets
exec .venv/bin/python -m pytest "$@"

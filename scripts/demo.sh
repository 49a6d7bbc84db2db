#!/usr/bin/env bash
# Quick start, command 1: set up, then run the demo on a throwaway repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/opssecrets demo "$@"

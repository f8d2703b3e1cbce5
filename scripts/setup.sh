#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) and install the package into it.
# Re-running is cheap: pip runs again only when pyproject.toml or constraints.txt changed (or the
# venv is missing). constraints.txt pins every package to the versions this project tests with.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: need Python >= 3.11 on PATH" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi

extras=${MOBILEVIT_EXTRAS:-dev}
stamp=.venv/.mobilevit-install-stamp
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) extras=$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import mobilevit' 2>/dev/null; then
  echo "setup: installing mobilevit[$extras] into .venv (torch is large: the first run takes minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # pyproject.toml holds ranges; constraints.txt the exact versions (torch 2.14.1, torchvision 0.29.1, ...)
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
fi

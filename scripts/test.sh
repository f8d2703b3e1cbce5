#!/usr/bin/env bash
# README command 2: set up .venv, then run the whole test suite. pytest's exit code is kept
# as is, so "no tests collected" (exit 5) fails like any other failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MOBILEVIT_OFFLINE=1
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# README command 1: set up .venv, then run the main job (the model table: params, GFLOPs, latency).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mobilevit bench "$@"

#!/usr/bin/env bash
# README command 1: set up .venv, then run the main job: train MobileViT-XXS on the built-in
# handwritten digits (configs/demo_digits.yaml), evaluate the kept weights on the held-out split,
# and show the report (curves in runs/demo_digits/curves.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/mobilevit train --config configs/demo_digits.yaml "$@"
.venv/bin/mobilevit eval runs/demo_digits/best.safetensors --config configs/demo_digits.yaml \
  data.root=runs/demo_digits/data/digits \
  run.out_dir=runs/demo_digits/eval
echo
cat runs/demo_digits/report.md
echo
.venv/bin/mobilevit bench --iters 10

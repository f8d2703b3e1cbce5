"""``mobilevit eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``eval`` subcommand to ``sub``."""
    s = sub.add_parser(
        "eval",
        help="top-1 / top-5 (classifiers), mIoU (segmentation) or COCO mAP (detection) on a validation split",
    )
    s.add_argument("weights", help="safetensors from train or convert (or a foreign checkpoint with --model)")
    s.add_argument(
        "--config",
        default=None,
        help="recipe whose data section to use (where the data is; the weights' recorded crop, resize "
        "and interpolation stay unless overridden)",
    )
    s.add_argument("overrides", nargs="*", help="e.g. data.root=PATH data.img_size=256")
    s.add_argument("--model", default=None, help="architecture, for files that do not record it")
    s.add_argument(
        "--out-dir",
        default=None,
        help="where the built-in data (digits, shapes) is written when no data.root is given "
        "(default: eval/ next to the weights)",
    )
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit eval`` and print the metrics as JSON; 0.

    Results go to ``--out-dir`` (or a ``run.out_dir=`` override); by default ``eval/`` next to the
    weights, ``runs/eval/ORG--REPO`` for an ``hf-hub:`` name.
    """
    from ..engine import evaluate_weights
    from ..weights.hub import is_hub_name

    overrides = list(args.overrides)
    if not any(o.startswith("run.out_dir=") for o in overrides):
        if is_hub_name(args.weights):  # no folder of its own: runs/eval/ORG--REPO
            default = Path("runs") / "eval" / args.weights.removeprefix("hf-hub:").replace("/", "--")
        else:
            default = Path(args.weights).parent / "eval"
        overrides.append(f"run.out_dir={args.out_dir or default}")
    result = evaluate_weights(args.weights, args.config, overrides, model_name=args.model)
    if "summary" in result:  # pycocotools' own table
        print(result.pop("summary"), file=sys.stderr)
    print(json.dumps(result))
    return 0

"""``mobilevit train``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``train`` subcommand to ``sub``."""
    s = sub.add_parser(
        "train", help="train or fine-tune a model of any task (the recipe's task) with the paper's recipe"
    )
    s.add_argument("--config", default=None, help="YAML recipe, or a built-in recipe's name (see configs/)")
    s.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-3 data.batch_size=64")
    s.add_argument("--resume", default=None, help="resume.pt (or its run folder) of an interrupted run")
    s.add_argument("--out-dir", default=None, help="shortcut for run.out_dir=...")
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit train`` and print the summary as JSON; 0, or 3 when the run stopped early."""
    from ..engine import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.out_dir:
        cfg.run.out_dir = args.out_dir
    summary = train(cfg, resume=args.resume)
    print(json.dumps(summary))
    return 0 if summary["stopped"] is None else 3

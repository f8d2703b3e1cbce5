"""``mobilevit weights``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``weights`` subcommand to ``sub``."""
    s = sub.add_parser("weights", help="list the released weights this package knows")
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit weights``: print the cache folder and each released weight, cached or its URL; 0."""
    from ..weights import WEIGHTS, cache_dir

    print(f"cache: {cache_dir()}")
    for tag, spec in sorted(WEIGHTS.items()):
        cached = (cache_dir() / spec.filename).is_file()
        print(
            f"{tag:28s} {spec.source_format:12s} input {spec.channel_order} "
            f"{'mIoU ' + str(spec.miou) if spec.miou else 'top-1 ' + str(spec.top1)}  {'cached' if cached else spec.url}"
        )
    return 0

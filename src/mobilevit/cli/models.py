"""``mobilevit models``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``models`` subcommand (an optional glob ``pattern``) to ``sub``."""
    s = sub.add_parser("models", help="list registered models with their parameter counts")
    s.add_argument("pattern", nargs="?", default="*")
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit models``: print each registered model matching the pattern, with its parameters; 0."""
    from ..bench import count_params
    from ..models import create_model, list_models

    for name in list_models(args.pattern):
        print(f"{name:24s} {count_params(create_model(name)):>12,d} params")
    return 0

"""The ``mobilevit`` command: one module per subcommand (``add_parser(sub)`` + ``run(args)``), each
calling library functions only. Errors meant for the user (bad input, a run that cannot go on)
print as one line and exit 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import MobileViTError
from . import ablate, bench, convert, evaluate, export, hub, models, predict, train, weights

COMMANDS = (models, weights, bench, convert, export, hub, train, evaluate, predict, ablate)


def build_parser() -> argparse.ArgumentParser:
    """The ``mobilevit`` argument parser: ``-v`` and one subcommand per module in `COMMANDS`."""
    p = argparse.ArgumentParser(prog="mobilevit", description="MobileViT models, weights and tools")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mobilevit`` command on ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    Leftover ``key=value`` arguments become overrides of commands that take them; a user error
    (`MobileViTError`, `ValueError`, `FileNotFoundError`) prints one line and returns 2.
    """
    parser = build_parser()
    # argparse cannot take positional key=value overrides after an option (``train --config X a=b``):
    # collect such leftovers as overrides of the commands that have them, refuse anything else.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.fn(args)
    except (MobileViTError, ValueError, FileNotFoundError) as e:
        print(f"mobilevit {args.command}: error: {e}", file=sys.stderr)
        return 2

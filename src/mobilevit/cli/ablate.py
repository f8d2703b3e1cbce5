"""``mobilevit ablate``: plan a study, check it, train what is left, write its tables and figures."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..ablate import AblationError, Plan, StudyOptions, plan_study, replot, run_study


def add_parser(sub: Any) -> None:
    """Add the ``ablate`` subcommand (the study, overrides and the `StudyOptions` flags) to ``sub``."""
    s = sub.add_parser(
        "ablate",
        help="re-run one of the paper's ablations: weight-decay, skip-connection, patch-size, ema-label-smoothing",
        description="Train every variant of a study (mobilevit/recipes/ablations/STUDY.yaml, configs/ablations/ "
        "in the checkout) with the same recipe and seeds, then write results.csv / results.md and a figure. "
        "Rerunning resumes an interrupted study.",
    )
    s.add_argument(
        "study", help="weight-decay, skip-connection, patch-size, ema-label-smoothing, or a study YAML"
    )
    s.add_argument("overrides", nargs="*", help="section.key=value for every variant")
    for f in StudyOptions.flags():  # the options are declared once, on StudyOptions
        kind = f.metadata["type"]
        s.add_argument(
            f.metadata["flag"], type=None if kind is str else kind, default=None, help=f.metadata["help"]
        )
    s.add_argument("--replot", action="store_true", help="redraw the tables and figures of a finished study")
    s.set_defaults(fn=run)


def options_from_args(args: argparse.Namespace) -> StudyOptions:
    """The `StudyOptions` of a parsed command line (``--variants a,b`` becomes a tuple)."""
    values = {f.name: getattr(args, f.name) for f in StudyOptions.flags()}
    if values["variants"] is not None:
        names = tuple(v.strip() for v in values["variants"].split(",") if v.strip())
        if not names:
            raise AblationError("--variants needs at least one variant name (comma separated)")
        values["variants"] = names
    return StudyOptions(**values, overrides=tuple(args.overrides))


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan of a parsed ``mobilevit ablate`` command line."""
    return plan_study(args.study, options_from_args(args))


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit ablate``: plan and train the study, or with ``--replot`` redraw it.

    Returns 0, or 3 when the study stopped early.
    """
    if args.replot:
        given = options_from_args(args).given_training_options()
        if given:
            raise AblationError(
                f"contradictory: --replot redraws the study in its folder as it was run, without "
                f"training; it takes no training options (got {', '.join(given)})"
            )
        paths = replot(args.study, args.out_dir)
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        return 0
    plan = plan_from_args(args)
    print(plan.describe(), flush=True)
    result = run_study(plan, echo=lambda s: print(s, flush=True))
    print(json.dumps(result))
    return 0 if result["stopped"] is None else 3

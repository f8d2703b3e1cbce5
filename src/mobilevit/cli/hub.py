"""``mobilevit push-to-hub``: a weights file as a Hugging Face Hub model repo (or the folder only)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``push-to-hub`` subcommand to ``sub``."""
    s = sub.add_parser(
        "push-to-hub",
        help="upload weights to the Hugging Face Hub as a repo create_model('hf-hub:...') reads back",
    )
    s.add_argument(
        "weights", help="a weights file (from train or convert, or any checkpoint load_model reads)"
    )
    s.add_argument("repo", help="ORG/NAME on the Hub")
    s.add_argument(
        "--license", default=None, help="licence of the weights (default: the source weights' recorded one)"
    )
    s.add_argument(
        "--dataset", default=None, help="what the weights were trained on (default: the run's config)"
    )
    s.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a validation figure for the card when the weights record none (the card says who measured it)",
    )
    s.add_argument("--private", action="store_true", help="create the repo private")
    s.add_argument("--token", default=None, help="Hub token (default: huggingface_hub's login / HF_TOKEN)")
    s.add_argument("--folder", default=None, help="write the repo folder here and upload nothing (a dry run)")
    s.add_argument(
        "--no-latency", dest="latency", action="store_false", help="leave the latency out of the card"
    )
    s.set_defaults(fn=run)


def _metrics(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--metric takes NAME=NUMBER, got {item!r}") from None
        if not name.strip():
            raise ValueError(f"--metric takes NAME=NUMBER, got {item!r}")
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit push-to-hub``: upload the weights as a Hub repo, or ``--folder`` only writes it; 0."""
    from ..publish import push_to_hub, save_pretrained

    common = dict(
        license=args.license, dataset=args.dataset, metrics=_metrics(args.metric), latency=args.latency
    )
    if args.folder:
        folder = save_pretrained(args.weights, args.folder, repo_id=args.repo, **common)
        print(
            f"wrote {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())) + " (nothing uploaded)"
        )
        return 0
    url = push_to_hub(args.weights, args.repo, private=args.private, token=args.token, **common)
    print(f"pushed {args.weights} to https://huggingface.co/{args.repo} ({url})")
    return 0

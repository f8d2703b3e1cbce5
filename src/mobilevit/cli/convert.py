"""``mobilevit convert``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``convert`` subcommand to ``sub``."""
    s = sub.add_parser(
        "convert",
        help="convert timm / transformers / ml-cvnets weights to ours (safetensors), or ours back to them (--to)",
    )
    s.add_argument("src", help="checkpoint file, or a transformers save_pretrained folder")
    s.add_argument(
        "out",
        help="output: .safetensors (ours, or --to timm), a folder (--to transformers), .pt (--to cvnets)",
    )
    s.add_argument(
        "--to",
        dest="target",
        choices=["timm", "transformers", "cvnets"],
        default=None,
        help="write the weights in this peer's layout instead of ours (checked to convert back exactly, "
        "and against the peer's own model where it is installed)",
    )
    s.add_argument(
        "--from",
        dest="source",
        choices=["timm", "transformers", "cvnets"],
        default=None,
        help="source format (default: detected from the keys)",
    )
    s.add_argument("--model", default=None, help="target model name (default: inferred from the shapes)")
    s.add_argument(
        "--keep-bgr",
        action="store_true",
        help="keep a BGR-trained stem as is (default: flip it so the model takes RGB)",
    )
    s.add_argument(
        "--trained-on",
        choices=["rgb", "bgr"],
        default=None,
        help="the channel order the source weights were trained on, overriding what this package "
        "believes (v1 and v3 on v1: BGR; v2 and v3 on v2: RGB, see docs/guides/weights.md, input convention); BGR "
        "stems are flipped to RGB",
    )
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit convert``: a foreign checkpoint to ours, or with ``--to`` ours to a peer layout; 0."""
    if args.target:
        return _run_to(args)
    from ..loading import convert_file

    meta = convert_file(
        args.src,
        args.out,
        source=args.source,
        model_name=args.model,
        to_rgb=not args.keep_bgr,
        trained_on=args.trained_on,
    )
    print(
        f"wrote {args.out}: {meta.arch} ({meta.num_classes} classes) from {meta.extra['converted_from']}, "
        f"takes {meta.channel_order} input"
    )
    if "license" in meta.extra:
        print(f"licence: {meta.extra['license']}")
    return 0


def _run_to(args: argparse.Namespace) -> int:
    from ..to_peers import convert_to

    given = [
        f
        for f, v in (
            ("--from", args.source),
            ("--keep-bgr", args.keep_bgr),
            ("--trained-on", args.trained_on),
        )
        if v
    ]
    if given:
        raise ValueError(f"{', '.join(given)} are for converting into this package, not with --to")
    report = convert_to(args.src, args.out, args.target, model_name=args.model)
    check = (
        f"checked in {args.target} itself: its model gives our outputs (max abs diff {report['peer_max_abs_diff']:.1e})"
        if report["peer_max_abs_diff"] is not None
        else f"checked by converting back, exactly ({args.target} itself is not importable here)"
    )
    print(
        f"wrote {report['out']}: {report['arch']} ({report['num_classes']} classes) in {args.target}'s layout, "
        f"takes {report['channel_order']} input; {check}"
    )
    if report["license"]:
        print(f"licence: {report['license']}")
    return 0

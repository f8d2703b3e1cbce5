"""``mobilevit convert``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    s = sub.add_parser("convert", help="convert timm / transformers / ml-cvnets weights to safetensors")
    s.add_argument("src", help="checkpoint file, or a transformers save_pretrained folder")
    s.add_argument("out", help="output .safetensors path")
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
        "believes (v1 and v3 on v1: BGR; v2 and v3 on v2: RGB, see README's input convention); BGR "
        "stems are flipped to RGB",
    )
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
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

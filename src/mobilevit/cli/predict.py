"""``mobilevit predict``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _at_least(low: int) -> Any:
    """An argparse type: an int >= ``low`` (argparse's own one-line error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def add_parser(sub: Any) -> None:
    """Add the ``predict`` subcommand to ``sub``."""
    s = sub.add_parser(
        "predict",
        help="top-5 classes, a colour overlay PNG of the predicted mask, or a PNG with the detected boxes",
    )
    s.add_argument("images", nargs="+")
    s.add_argument("--weights", required=True)
    s.add_argument("--model", default=None, help="architecture, for files that do not record it")
    s.add_argument(
        "--img-size", type=_at_least(32), default=None, help="crop size (default: the weights' own)"
    )
    s.add_argument("--topk", type=_at_least(1), default=5, help="classes shown per image (default 5)")
    s.add_argument(
        "--out-dir", default="predictions", help="segmentation / detection: where the output PNGs go"
    )
    s.add_argument(
        "--score-threshold", type=float, default=0.3, help="detection: lowest score drawn (default 0.3)"
    )
    s.add_argument(
        "--json",
        action="store_true",
        help="standard output is one JSON array and nothing else (messages: stderr)",
    )
    s.set_defaults(fn=run)


def _print_results(results: list[dict[str, Any]], as_json: bool, show: Any) -> int:
    """The human-readable lines, or with ``--json`` one JSON array alone on standard output (a
    file's error is then its entry's ``error`` and a line on standard error)."""
    if as_json:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}", file=sys.stderr)
        print(json.dumps(results))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
            else:
                show(r)
    return 0 if all("error" not in r for r in results) else 2


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit predict`` with the task the weights record; 0, or 2 when an image failed."""
    from ..loading import class_names, load_model
    from ..predict import predict_boxes, predict_images, predict_masks

    model, meta = load_model(args.weights, args.model)
    classes = class_names(meta)
    out_dir = Path(args.out_dir)
    if meta.task == "detection":
        found = predict_boxes(model, classes, args.images, out_dir, args.score_threshold)

        def show(r: dict[str, Any]) -> None:
            shown = ", ".join(f"{d['class']} {d['score']:.2f}" for d in r["detections"]) or "nothing"
            print(f"{r['image']} -> {r['boxes_png']}  ({shown})")

        return _print_results(found, args.json, show)
    if meta.task == "segmentation":
        written = predict_masks(model, classes, args.images, out_dir, size=args.img_size)
        return _print_results(
            written, args.json, lambda r: print(f"{r['image']} -> {r['overlay']}  ({r['summary']})")
        )
    results = predict_images(model, classes, args.images, img_size=args.img_size, topk=args.topk)

    def show_top(r: dict[str, Any]) -> None:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['prob']:7.2%}  {t['class']}")

    return _print_results(results, args.json, show_top)

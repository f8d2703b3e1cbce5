"""Train images/s on Imagenette, our engine's whole loop against timm's plain loop, without the
accuracy runs of benchmarks/imagenette.py.

The same measurement as ``imagenette.py --speed-rounds`` (`imagenette.loop_speed`): both loops as
that benchmark's accuracy runs train (data loader, model, AdamW, schedule, EMA; the recipe in its
docstring), in alternating rounds seconds apart, each round training ours and timm's
mobilevit_xxs for 2 epochs on a subset of the train images already read once, the second epoch
timed. More rounds than imagenette.py's default, as the ratio of one round spreads by ~0.15 on a
shared 2-core machine. Target: ours / timm >= 1.0x (the median round).

Prints, as its last line, a JSON object with every round's figures and the median ratio; writes
docs/imagenette_speed.md. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from _common import REPO, print_json_last, write_doc
from imagenette import DEFAULT_ROOT, Recipe, loop_speed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="Imagenette with train/ and val/")
    p.add_argument("--out", default=str(REPO / "runs" / "bench_imagenette_speed"))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--images", type=int, default=150, help="train images per class of each round's runs")
    p.add_argument("--img-size", type=int, default=112, help="as imagenette.py's accuracy runs")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument(
        "--ours-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine override for ours' runs only, e.g. run.keep_freed_memory=false (repeatable)",
    )
    p.add_argument("--doc", default="imagenette_speed.md", help="the page written under docs/")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise SystemExit(
            f"imagenette_speed.py: {root} has no train/ and val/ folders (see ../shared/data/README.md)"
        )
    if args.rounds < 1 or args.images < 3 or args.img_size < 32 or args.batch < 2:
        raise SystemExit(
            "imagenette_speed.py: --rounds >= 1, --images >= 3, --img-size >= 32 and --batch >= 2"
        )
    classes = [d for d in (root / "train").iterdir() if d.is_dir()]
    if args.images * len(classes) < args.batch:
        raise SystemExit(
            f"imagenette_speed.py: {args.images} images x {len(classes)} classes cannot fill one batch of {args.batch}"
        )
    if any("=" not in kv for kv in args.ours_set):
        raise SystemExit(f"imagenette_speed.py: --ours-set takes KEY=VALUE, got {args.ours_set}")
    if Path(args.doc).name != args.doc or not args.doc.endswith(".md"):
        raise SystemExit(f"imagenette_speed.py: --doc takes a file name ending in .md, got {args.doc!r}")
    r = Recipe(epochs=2, img_size=args.img_size, batch=args.batch, ours_set=tuple(args.ours_set))
    s = loop_speed(root, Path(args.out), r, args.rounds, args.images)
    ratios = s["ratios"]
    rows = "\n".join(
        f"| {i + 1} | {f} | {a:.1f} | {b:.1f} | {q:.3f} |"
        for i, (f, a, b, q) in enumerate(zip(s["first"], s["ours"], s["timm"], ratios, strict=True))
    )
    ahead = sum(q >= 1.0 for q in ratios)
    body = (
        f"mobilevit_xxs trained by each library's own loop (benchmarks/imagenette.py's recipe) at "
        f"{r.img_size} px, batch {r.batch}, on {s['train_images']:,} Imagenette train images; "
        f"{s['rounds']} alternating rounds, each both loops for 2 epochs, the second epoch timed "
        "(loader workers started, files read once before)."
        + (f" Ours' runs with `{' '.join(r.ours_set)}`." if r.ours_set else "")
        + "\n\n"
        f"Ours / timm train images/s, median round: **{s['ratio_median']:.3f}x** (target >= 1.0x: "
        f"{'met' if s['ratio_median'] >= 1.0 else 'not met'}); ours ahead in {ahead} of {len(ratios)} "
        f"rounds; spread of the ratio {s['ratio_spread']:.3f}.\n\n"
        "| round | first | ours images/s | timm images/s | ours / timm |\n|---:|---|---:|---:|---:|\n"
        + rows
        + "\n"
    )
    cmd = "python benchmarks/imagenette_speed.py" + "".join(
        f" --{k.replace('_', '-')} {v}"
        for k, v in (
            ("rounds", args.rounds),
            ("images", args.images),
            ("img_size", args.img_size),
            ("batch", args.batch),
        )
        if v != p.get_default(k)
    )
    cmd += "".join(f" --ours-set {kv}" for kv in args.ours_set)
    cmd += f" --doc {args.doc}" if args.doc != p.get_default("doc") else ""
    write_doc(args.doc, "Imagenette train images/s: ours against timm", body, cmd)
    print_json_last(
        {
            "ours": [round(x, 1) for x in s["ours"]],
            "timm": [round(x, 1) for x in s["timm"]],
            "ratios": [round(x, 3) for x in ratios],
            "ratio_median": round(s["ratio_median"], 3),
            "ratio_spread": round(s["ratio_spread"], 3),
            "rounds_ours_ahead": ahead,
            "target_met": s["ratio_median"] >= 1.0,
        }
    )


if __name__ == "__main__":
    main()

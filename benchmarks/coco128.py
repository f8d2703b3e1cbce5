"""SSDLite-MobileViT-XXS on coco128: real COCO files through every step, on a CPU.

The backbone is the MobileViT-XXS classifier trained here on Imagenette
(benchmarks/artifacts/imagenette_mobilevit_xxs.safetensors, from benchmarks/imagenette_recipe.py);
the detector trains with configs/coco128_ssdlite_mobilevit_xxs.yaml on the 128 photos and their
real annotations (crowd regions, the 80 category ids up to 90), is scored by pycocotools, and
draws its boxes on a real photo with `mobilevit predict`'s code. coco128 has no held-out split, so
the mAP is measured on the training photos: a check that real files go through every step, not a
detector's score. The run trains in runs/bench_coco128 (an interrupted run continues). Prints, as its
last line, a JSON object with the mAPs and the time; writes docs/coco128.md and two PNGs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import DOCS, REPO, copy_curves, epoch_table, print_json_last, train_and_evaluate, write_doc

from mobilevit.predict import predict_boxes

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "coco128"
BACKBONE = REPO / "benchmarks" / "artifacts" / "imagenette_mobilevit_xxs.safetensors"
MAP_COLUMNS = [
    ("epoch", "epoch"),
    ("train loss", "train_loss"),
    ("mAP (raw)", "val_map"),
    ("mAP@.5 (raw)", "val_map50"),
    ("mAP (EMA)", "val_ema_map"),
    ("mAP@.5 (EMA)", "val_ema_map50"),
]


def busiest_photo(root: Path) -> tuple[Path, int]:
    """The photo with the most non-crowd annotations (the most to draw), and that count."""
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    counts: dict[int, int] = {}
    for a in data["annotations"]:
        if not a.get("iscrowd"):
            counts[a["image_id"]] = counts.get(a["image_id"], 0) + 1
    image_id = max(counts, key=lambda i: (counts[i], -i))
    name = next(im["file_name"] for im in data["images"] if im["id"] == image_id)
    return root / "train2017" / name, counts[image_id]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="coco128 with annotations/ and train2017/")
    p.add_argument("--backbone", default=str(BACKBONE), help="classifier weights for the backbone")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "bench_coco128"))
    p.add_argument(
        "--threshold",
        type=float,
        default=0.15,
        help="score threshold of the drawn boxes (a detector trained on 128 photos scores low)",
    )
    p.add_argument("overrides", nargs="*", help="extra config overrides, e.g. optim.epochs=10")
    args = p.parse_args()
    root = Path(args.root).resolve()
    if not (root / "annotations" / "instances_train2017.json").is_file():
        raise SystemExit(
            f"coco128.py: {root} has no annotations/instances_train2017.json (../shared/data/README.md)"
        )
    if not Path(args.backbone).is_file():
        raise SystemExit(f"coco128.py: no backbone weights at {args.backbone}")
    recipe = REPO / "configs" / "coco128_ssdlite_mobilevit_xxs.yaml"
    overrides = [
        f"data.root={root}",
        f"model.backbone_weights={Path(args.backbone).resolve()}",
        *args.overrides,
    ]
    run = train_and_evaluate(recipe, overrides, args.out_dir)
    t, final, cfg = run.trainer, run.final, run.trainer.cfg
    photo, objects = busiest_photo(root)
    (shown,) = predict_boxes(
        run.best, run.classes, [photo], t.out / "predictions", score_threshold=args.threshold
    )
    shutil.copy(shown["boxes_png"], DOCS / "coco128_sample.png")
    copy_curves(run, "coco128_curves.png")
    seconds = sum(r.get("epoch_seconds", 0.0) for r in run.rows)
    body = (
        f"SSDLite-MobileViT-XXS, backbone from the Imagenette-trained XXS classifier, {cfg.optim.epochs} "
        f"epochs on coco128 ({len(t.train_ds)} photos, {cfg.data.image_size} px, batch {cfg.data.batch_size}, "
        f"configs/coco128_ssdlite_mobilevit_xxs.yaml), on 2 CPU cores. Scored by pycocotools on the same "
        "photos (coco128 has no held-out split; crowd regions from the file): a check that real COCO files "
        "go through loading, training, the mAP and prediction, not a detector's score (the paper's "
        "SSDLite-XXS reaches 19.9 mAP after 200 epochs on 118k photos).\n\n"
        f"- best.safetensors ({run.summary.get('best_weights', '?')} weights): mAP@[.5:.95] "
        f"**{final['map']:.4f}**, mAP@.5 **{final['map50']:.4f}**, mAP@.75 {final['map75']:.4f}; "
        f"small / medium / large {final['map_small']:.4f} / {final['map_medium']:.4f} / {final['map_large']:.4f}\n"
        f"- training + evaluation: **{seconds / 60:.1f} min** (the epochs' recorded times)\n\n"
        "pycocotools' summary:\n\n```\n"
        + final["summary"].strip("\n")
        + "\n```\n\n"
        + epoch_table(run.rows, MAP_COLUMNS, only_if="val_map")
        + "\n\n![curves](coco128_curves.png)\n\n"
        f"The photo with the most objects ({photo.name}, {objects} annotated), detections scoring "
        f"{args.threshold} or more (`mobilevit predict`):\n\n![sample](coco128_sample.png)\n"
    )
    write_doc(
        "coco128.md",
        "SSDLite-MobileViT-XXS on coco128 (real COCO files)",
        body,
        "python benchmarks/coco128.py",
    )
    print_json_last(
        {
            "map": round(final["map"], 4),
            "map50": round(final["map50"], 4),
            "map75": round(final["map75"], 4),
            "minutes": round(seconds / 60, 2),
            "epochs": run.summary["epochs_done"],
            "best_weights": run.summary.get("best_weights"),
        }
    )


if __name__ == "__main__":
    main()

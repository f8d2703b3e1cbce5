"""SSDLite-MobileViT-XXS trained from scratch on the built-in generated shapes set (COCO format), CPU.

Target (issue 4): COCO mAP@.5 >= 0.5 on the held-out split (pycocotools), in under 20 minutes
on 2 cores. Prints, as its last line, a JSON object with ``map50``, ``map`` and ``minutes``;
writes docs/detection_shapes.md and a sample prediction PNG.
"""

from __future__ import annotations

import shutil

from _common import (
    DOCS,
    REPO,
    copy_curves,
    demo_args,
    epoch_table,
    print_json_last,
    train_and_evaluate,
    write_doc,
)

from mobilevit.predict import predict_boxes

MAP_COLUMNS = [
    ("epoch", "epoch"),
    ("train loss", "train_loss"),
    ("val mAP (raw)", "val_map"),
    ("val mAP@.5 (raw)", "val_map50"),
    ("val mAP (EMA)", "val_ema_map"),
    ("val mAP@.5 (EMA)", "val_ema_map50"),
]


def main() -> None:
    args = demo_args(__doc__, "bench_detection_shapes")
    run = train_and_evaluate(REPO / "configs" / "demo_detection_shapes.yaml", args.overrides, args.out_dir)
    t, final, cfg = run.trainer, run.final, run.trainer.cfg
    # the first held-out image with three or more objects
    index = next(i for i in range(len(t.val_ds)) if len(t.val_ds[i][1]["labels"]) >= 3)
    sample = t.val_ds.image_path(index)
    (shown,) = predict_boxes(run.best, run.classes, [sample], t.out / "predictions", score_threshold=0.5)
    shutil.copy(shown["boxes_png"], DOCS / "detection_shapes_sample.png")
    copy_curves(run, "detection_shapes_curves.png")
    body = (
        f"SSDLite-MobileViT-XXS from scratch, {len(t.train_ds)} train / {len(t.val_ds)} held-out "
        f"images of {cfg.data.image_size} px, {cfg.optim.epochs} epochs (configs/demo_detection_shapes.yaml), "
        "scored by pycocotools on the held-out COCO annotations:\n\n"
        f"- best.safetensors: mAP@[.5:.95] **{final['map']:.4f}**, mAP@.5 **{final['map50']:.4f}**, "
        f"mAP@.75 {final['map75']:.4f}; small / medium / large {final['map_small']:.4f} / "
        f"{final['map_medium']:.4f} / {final['map_large']:.4f}\n"
        f"- wall time, data generation + training + evaluation: **{run.minutes:.2f} min**\n\n"
        "pycocotools' summary:\n\n```\n"
        + final["summary"].strip("\n")
        + "\n```\n\n"
        + epoch_table(run.rows, MAP_COLUMNS, only_if="val_map")
        + "\n\n![curves](detection_shapes_curves.png)\n\nA held-out image, detections scoring 0.5 or more "
        "(`mobilevit predict`):\n\n![sample](detection_shapes_sample.png)\n"
    )
    write_doc(
        "detection_shapes.md",
        "SSDLite-MobileViT-XXS on the built-in shapes detection set",
        body,
        "python benchmarks/detection_shapes.py",
    )
    print_json_last(
        {
            "map50": round(final["map50"], 4),
            "map": round(final["map"], 4),
            "minutes": round(run.minutes, 2),
            "epochs": run.summary["epochs_done"],
            "target_map50": 0.5,
            "target_minutes": 20,
        }
    )


if __name__ == "__main__":
    main()

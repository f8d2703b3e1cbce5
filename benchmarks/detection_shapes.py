"""SSDLite-MobileViT-XXS trained from scratch on the built-in generated shapes set (COCO format), CPU.

Target (issue 4): COCO mAP@.5 >= 0.5 on the held-out split (pycocotools), in under 20 minutes
on 2 cores. Prints, as its last line, a JSON object with ``map50``, ``map`` and ``minutes``;
writes docs/detection_shapes.md and a sample prediction PNG.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time

from _common import REPO, print_json_last, write_doc

from mobilevit.engine import Trainer, load_config
from mobilevit.predict import load_detector, predict_boxes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("overrides", nargs="*", help="extra config overrides, e.g. optim.epochs=10")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "bench_detection_shapes"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(
        REPO / "configs" / "demo_detection_shapes.yaml",
        [*args.overrides, f"run.out_dir={args.out_dir}", "run.progress=false"],
    )
    start = time.perf_counter()
    trainer = Trainer(cfg)
    summary = trainer.fit()
    best, classes = load_detector(trainer.out / "best.safetensors")
    final = trainer.evaluate(best.to(trainer.info.device))
    minutes = (time.perf_counter() - start) / 60
    # the first held-out image with three or more objects
    index = next(i for i in range(len(trainer.val_ds)) if len(trainer.val_ds[i][1]["labels"]) >= 3)
    sample = trainer.val_ds.image_path(index)
    (shown,) = predict_boxes(best, classes, [sample], trainer.out / "predictions", score_threshold=0.5)
    shutil.copy(shown["boxes_png"], REPO / "docs" / "detection_shapes_sample.png")
    shutil.copy(trainer.out / "curves.png", REPO / "docs" / "detection_shapes_curves.png")
    rows = trainer.metrics.rows() if trainer.metrics else []
    table = [
        "| epoch | train loss | val mAP (raw) | val mAP@.5 (raw) | val mAP (EMA) | val mAP@.5 (EMA) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['val_map']:.4f} | {r['val_map50']:.4f} | "
        f"{r.get('val_ema_map', float('nan')):.4f} | {r.get('val_ema_map50', float('nan')):.4f} |"
        for r in rows
        if "val_map" in r
    ]
    body = (
        f"SSDLite-MobileViT-XXS from scratch, {len(trainer.train_ds)} train / {len(trainer.val_ds)} held-out "
        f"images of {cfg.data.image_size} px, {cfg.optim.epochs} epochs (configs/demo_detection_shapes.yaml), "
        "scored by pycocotools on the held-out COCO annotations:\n\n"
        f"- best.safetensors: mAP@[.5:.95] **{final['map']:.4f}**, mAP@.5 **{final['map50']:.4f}**, "
        f"mAP@.75 {final['map75']:.4f}; small / medium / large {final['map_small']:.4f} / "
        f"{final['map_medium']:.4f} / {final['map_large']:.4f}\n"
        f"- wall time, data generation + training + evaluation: **{minutes:.2f} min**\n\n"
        "pycocotools' summary:\n\n```\n"
        + final["summary"].strip("\n")
        + "\n```\n\n"
        + "\n".join(table)
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
            "minutes": round(minutes, 2),
            "epochs": summary["epochs_done"],
            "target_map50": 0.5,
            "target_minutes": 20,
        }
    )


if __name__ == "__main__":
    main()

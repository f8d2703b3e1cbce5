"""DeepLabv3-MobileViT-XXS trained from scratch on the built-in generated shapes set (VOC layout), CPU.

Target (issue 5): mIoU >= 0.7 on the held-out split, in under 20 minutes on 2 cores.
Prints, as its last line, a JSON object with ``miou`` and ``minutes``; writes
docs/segmentation_shapes.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time

from _common import REPO, print_json_last, write_doc

from mobilevit.engine import Trainer, load_config
from mobilevit.predict import load_segmenter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("overrides", nargs="*", help="extra config overrides, e.g. optim.epochs=10")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "bench_segmentation_shapes"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(
        REPO / "configs" / "demo_segmentation_shapes.yaml",
        [*args.overrides, f"run.out_dir={args.out_dir}", "run.progress=false"],
    )
    start = time.perf_counter()
    trainer = Trainer(cfg)
    summary = trainer.fit()
    best, classes = load_segmenter(trainer.out / "best.safetensors")
    final = trainer.evaluate(best.to(trainer.info.device))
    minutes = (time.perf_counter() - start) / 60
    rows = trainer.metrics.rows() if trainer.metrics else []
    per_class = " | ".join(
        f"{c} {v:.3f}" for c, v in zip(classes, final["iou"], strict=True) if v is not None
    )
    table = ["| epoch | train loss | val mIoU (raw) | val mIoU (EMA) |", "|---:|---:|---:|---:|"]
    table += [
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r.get('val_miou', float('nan')):.4f} | "
        f"{r.get('val_ema_miou', float('nan')):.4f} |"
        for r in rows
    ]
    shutil.copy(trainer.out / "curves.png", REPO / "docs" / "segmentation_shapes_curves.png")
    body = (
        f"DeepLabv3-MobileViT-XXS from scratch, {len(trainer.train_ds)} train / {len(trainer.val_ds)} held-out "
        f"images of {cfg.data.crop_size} px, {cfg.optim.epochs} epochs (configs/demo_segmentation_shapes.yaml):\n\n"
        f"- held-out mIoU of best.safetensors: **{final['miou']:.4f}**, pixel accuracy {final['pixel_acc']:.4f}\n"
        f"- per-class IoU: {per_class}\n"
        f"- wall time, data generation + training + evaluation: **{minutes:.2f} min**\n\n"
        + "\n".join(table)
        + "\n\n![curves](segmentation_shapes_curves.png)\n"
    )
    write_doc(
        "segmentation_shapes.md",
        "DeepLabv3-MobileViT-XXS on the built-in shapes set",
        body,
        "python benchmarks/segmentation_shapes.py",
    )
    print_json_last(
        {
            "miou": round(final["miou"], 4),
            "pixel_acc": round(final["pixel_acc"], 4),
            "minutes": round(minutes, 2),
            "epochs": summary["epochs_done"],
            "target_miou": 0.7,
            "target_minutes": 20,
        }
    )


if __name__ == "__main__":
    main()

"""DeepLabv3-MobileViT-XXS trained from scratch on the built-in generated shapes set (VOC layout), CPU.

Target (issue 5): mIoU >= 0.7 on the held-out split, in under 20 minutes on 2 cores.
Prints, as its last line, a JSON object with ``miou`` and ``minutes``; writes
docs/segmentation_shapes.md.
"""

from __future__ import annotations

from _common import REPO, copy_curves, demo_args, epoch_table, print_json_last, train_and_evaluate, write_doc


def main() -> None:
    args = demo_args(__doc__, "bench_segmentation_shapes")
    run = train_and_evaluate(REPO / "configs" / "demo_segmentation_shapes.yaml", args.overrides, args.out_dir)
    t, final, cfg = run.trainer, run.final, run.trainer.cfg
    per_class = " | ".join(
        f"{c} {v:.3f}" for c, v in zip(run.classes, final["iou"], strict=True) if v is not None
    )
    table = epoch_table(
        run.rows,
        [
            ("epoch", "epoch"),
            ("train loss", "train_loss"),
            ("val mIoU (raw)", "val_miou"),
            ("val mIoU (EMA)", "val_ema_miou"),
        ],
    )
    copy_curves(run, "segmentation_shapes_curves.png")
    body = (
        f"DeepLabv3-MobileViT-XXS from scratch, {len(t.train_ds)} train / {len(t.val_ds)} held-out "
        f"images of {cfg.data.crop_size} px, {cfg.optim.epochs} epochs (configs/demo_segmentation_shapes.yaml):\n\n"
        f"- held-out mIoU of best.safetensors: **{final['miou']:.4f}**, pixel accuracy {final['pixel_acc']:.4f}\n"
        f"- per-class IoU: {per_class}\n"
        f"- wall time, data generation + training + evaluation: **{run.minutes:.2f} min**\n\n"
        + table
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
            "minutes": round(run.minutes, 2),
            "epochs": run.summary["epochs_done"],
            "target_miou": 0.7,
            "target_minutes": 20,
        }
    )


if __name__ == "__main__":
    main()

"""The main job, measured: MobileViT-XXS on scikit-learn's digits, trained and evaluated on CPU.

Target (issue 3): >= 97% top-1 on the held-out split within 10 minutes on 2 CPU cores.
Prints, as its last line, a JSON object with ``top1`` (0-1) and ``minutes``; writes
docs/demo_digits.md.
"""

from __future__ import annotations

from _common import REPO, copy_curves, demo_args, epoch_table, print_json_last, train_and_evaluate, write_doc


def main() -> None:
    args = demo_args(__doc__, "bench_demo_digits")
    run = train_and_evaluate(REPO / "configs" / "demo_digits.yaml", args.overrides, args.out_dir)
    t, final = run.trainer, run.final
    raw = t.evaluate(t.model)
    cfg = t.cfg
    table = epoch_table(
        run.rows,
        [
            ("epoch", "epoch"),
            ("train loss", "train_loss"),
            ("val top-1 (raw)", "val_top1"),
            ("val top-1 (EMA)", "val_ema_top1"),
        ],
    )
    kept = run.summary.get("best_weights") or "raw"
    body = (
        f"MobileViT-XXS ({cfg.data.dataset}, {len(t.train_ds)} train / {final['count']} held-out images, "
        f"{cfg.optim.epochs} epochs, multi-scale {cfg.data.resolutions}):\n\n"
        f"- held-out top-1 of best.safetensors ({kept} weights): **{final['top1']:.4f}**, top-5 {final['top5']:.4f}\n"
        f"- held-out top-1 of the raw model at the end: {raw['top1']:.4f}\n"
        f"- wall time, data generation + training + evaluation: **{run.minutes:.2f} min**\n\n"
        + table
        + "\n\n![curves](demo_digits_curves.png)\n"
    )
    copy_curves(run, "demo_digits_curves.png")
    write_doc(
        "demo_digits.md",
        "Demo: MobileViT-XXS on the built-in digits",
        body,
        "python benchmarks/demo_digits.py",
    )
    print_json_last(
        {
            "top1": round(final["top1"], 4),
            "top5": round(final["top5"], 4),
            "top1_raw": round(raw["top1"], 4),
            "best_weights": kept,
            "minutes": round(run.minutes, 2),
            "epochs": run.summary["epochs_done"],
            "target_top1": 0.97,
            "target_minutes": 10,
        }
    )


if __name__ == "__main__":
    main()

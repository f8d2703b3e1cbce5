"""One Imagenette CPU recipe trained to its end (configs/imagenette_<model>.yaml), measured.

Targets: the XXS recipe reaches >= 80% top-1 on Imagenette val, and its EMA model is at least the
raw model by the end. The run trains in runs/imagenette_<model> (as `mobilevit train` with the
recipe does), so an interrupted or already finished run continues or is only read. Prints, as its
last line, a JSON object with the final raw / EMA top-1, the kept weights' top-1 and the time;
writes docs/imagenette_recipe_<model>.md and its curves. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import REPO, copy_curves, epoch_table, print_json_last, train_and_evaluate, write_doc
from scipy.stats import binomtest

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "imagenette160"


RECALIBRATE_DEFAULT = [50, 100, 200]


def run_minutes(out: Path, rows: list[dict]) -> tuple[float, str]:
    """Training + evaluation time: the rows' own epoch times, or (runs from before they were
    recorded) the time report.md gives, which the engine writes when the training ends."""
    if rows and all("epoch_seconds" in r for r in rows):
        return sum(r["epoch_seconds"] for r in rows) / 60, "sum of the epochs' recorded times"
    found = re.search(r"time: ([0-9.]+) min", (out / "report.md").read_text())
    return (
        (float(found.group(1)), "the training process's time in report.md")
        if found
        else (float("nan"), "unknown")
    )


def correct_per_image(trainer: Any, model: Any) -> np.ndarray:
    """Whether ``model``'s top-1 is right on each image of the run's validation split, in order."""
    model.eval()
    hits = []
    with torch.no_grad(), trainer.ctx.autocast():  # as the engine's evaluation runs
        for batch in trainer.val_loader:
            if batch["targets"].numel() == 0:
                continue
            logits = model(trainer.task.to_device(batch["images"]))
            hits.append((logits.argmax(1).cpu() == batch["targets"]).numpy())
    return np.concatenate(hits)


def mcnemar(a_ok: np.ndarray, b_ok: np.ndarray) -> tuple[int, int, float]:
    """Two models on the same images: how many only ``a`` gets right, how many only ``b``, and the exact
    McNemar test's p (a two-sided binomial test on those discordant images) of "they are equally good"."""
    a_only, b_only = int((a_ok & ~b_ok).sum()), int((b_ok & ~a_ok).sum())
    return a_only, b_only, float(binomtest(b_only, a_only + b_only, 0.5).pvalue) if a_only + b_only else 1.0


def verdict(a_only: int, b_only: int, p: float, b_name: str) -> str:
    """`mcnemar`'s result in words, about ``b`` against ``a`` at the 5% level."""
    if p >= 0.05:
        return "no significant difference"
    return f"{b_name} significantly {'ahead' if b_only > a_only else 'behind'}"


def paired_gap(raw_ok: np.ndarray, ema_ok: np.ndarray) -> dict[str, Any]:
    """EMA against raw on the same images (`mcnemar`)."""
    raw_only, ema_only, p = mcnemar(raw_ok, ema_ok)
    return {
        "raw_only": raw_only,
        "ema_only": ema_only,
        "p": p,
        "verdict": verdict(raw_only, ema_only, p, "EMA"),
    }


def compare_with(run: Any, path: Path) -> dict[str, Any]:
    """The kept weights of this run against another file of the same classes (an earlier recipe's
    ``best.safetensors``), image by image on this run's validation split (`mcnemar`)."""
    from mobilevit.loading import class_names, load_model

    other, meta = load_model(path)
    if class_names(meta) != run.classes:
        raise SystemExit(
            f"imagenette_recipe.py: --compare-with {path} has the classes {class_names(meta)}, "
            f"this run {run.classes}"
        )
    other_ok = correct_per_image(run.trainer, other.to(run.trainer.info.device))
    kept_ok = correct_per_image(run.trainer, run.best)
    other_only, kept_only, p = mcnemar(other_ok, kept_ok)
    return {
        "weights": str(path),
        "top1": float(other_ok.mean()),
        "other_only": other_only,
        "kept_only": kept_only,
        "p": p,
        "verdict": verdict(other_only, kept_only, p, "this run's kept weights"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="mobilevit_xxs", help="the recipe: configs/imagenette_<model>.yaml")
    p.add_argument("--root", default=str(DEFAULT_ROOT))
    p.add_argument(
        "--recalibrate",
        type=int,
        nargs="*",
        default=RECALIBRATE_DEFAULT,
        help="also evaluate the final EMA model with its BatchNorm statistics re-estimated on this "
        "many training batches (what ema.recalibrate_bn=N would evaluate at the end)",
    )
    p.add_argument("--out-dir", default="", help="the run folder (default: runs/imagenette_<model>)")
    p.add_argument(
        "--compare-with",
        default="",
        help="another run's weights of the same classes (e.g. an earlier recipe's best.safetensors): "
        "its top-1 and an image-by-image test against this run's kept weights",
    )
    p.add_argument("overrides", nargs="*", help="extra config overrides")
    args = p.parse_args()
    if args.compare_with and not Path(args.compare_with).is_file():
        raise SystemExit(f"imagenette_recipe.py: --compare-with {args.compare_with}: no such file")
    logging.basicConfig(level=logging.WARNING)
    recipe = REPO / "configs" / f"imagenette_{args.model}.yaml"
    if not recipe.is_file():
        raise SystemExit(f"imagenette_recipe.py: no recipe {recipe}")
    if not (Path(args.root) / "train").is_dir():
        raise SystemExit(f"imagenette_recipe.py: {args.root} has no train/ (see ../shared/data/README.md)")
    out = Path(args.out_dir) if args.out_dir else REPO / "runs" / f"imagenette_{args.model}"
    run = train_and_evaluate(recipe, [f"data.root={Path(args.root).resolve()}", *args.overrides], str(out))
    rows, final = run.rows, run.final
    last = rows[-1]
    minutes, how = run_minutes(out, rows)
    curves = f"imagenette_recipe_{args.model}_curves.png"
    copy_curves(run, curves)
    cfg = run.trainer.cfg
    table = epoch_table(
        rows,
        [
            ("epoch", "epoch"),
            ("train loss", "train_loss"),
            ("val top-1 (raw)", "val_top1"),
            ("val top-1 (EMA)", "val_ema_top1"),
            ("kept", "best_of"),
            ("train images/s", "images_per_s"),
        ],
    )
    kept = run.summary.get("best_weights") or "raw"
    recal = {n: run.trainer.evaluate(run.trainer.ema_model(n))["top1"] for n in args.recalibrate}
    raw_ok = correct_per_image(run.trainer, run.trainer.model)
    ema_ok = correct_per_image(run.trainer, run.trainer.ema_model())  # as the epoch rows evaluate it
    if (round(raw_ok.mean(), 6), round(ema_ok.mean(), 6)) != (
        round(last["val_top1"], 6),
        round(last["val_ema_top1"], 6),
    ):
        raise SystemExit(
            f"imagenette_recipe.py: the final models score {raw_ok.mean():.4f} / {ema_ok.mean():.4f} (raw / EMA), "
            f"the last epoch's row {last['val_top1']:.4f} / {last['val_ema_top1']:.4f}: the run did not end "
            "(resume it) or its models are not the row's"
        )
    pair = paired_gap(raw_ok, ema_ok)
    other = compare_with(run, Path(args.compare_with)) if args.compare_with else None
    recal_lines = "".join(
        f"- EMA with BatchNorm statistics re-estimated on {n} training batches (`ema.recalibrate_bn={n}`): "
        f"top-1 **{100 * v:.2f}%** (EMA - raw: {100 * (v - last['val_top1']):+.2f} pt)\n"
        for n, v in recal.items()
    )
    body = (
        f"{cfg.model.name} from scratch on Imagenette ({len(run.trainer.train_ds)} train / {final['count']} val), "
        f"configs/imagenette_{args.model}.yaml: {cfg.optim.epochs} epochs at {cfg.data.img_size} px "
        f"(multi-scale {cfg.data.resolutions}), batch {cfg.data.batch_size}, AdamW {cfg.optim.lr} with a cosine to {cfg.optim.min_lr:g}, EMA with "
        f"timm's warmup formula (power {cfg.ema.warmup_power:.4g}).\n\n"
        f"- final epoch: raw top-1 **{100 * last['val_top1']:.2f}%**, EMA top-1 **{100 * last['val_ema_top1']:.2f}%** "
        f"(EMA - raw: {100 * (last['val_ema_top1'] - last['val_top1']):+.2f} pt)\n"
        f"- the same two models image by image: raw alone right on {pair['raw_only']}, EMA alone right "
        f"on {pair['ema_only']}; exact McNemar test p = {pair['p']:.3f}: **{pair['verdict']}** (5% level)\n"
        + recal_lines
        + f"- best.safetensors ({kept} weights, epoch {run.summary['best_epoch']}): top-1 **{100 * final['top1']:.2f}%**, "
        f"top-5 {100 * final['top5']:.2f}% (evaluated again from the file)\n"
        + (
            f"- against `{other['weights']}` (top-1 {100 * other['top1']:.2f}%), image by image: that file alone "
            f"right on {other['other_only']}, this run's kept weights alone on {other['kept_only']}; exact McNemar "
            f"p = {other['p']:.3f}: **{other['verdict']}**\n"
            if other
            else ""
        )
        + f"- time: **{minutes:.0f} min** ({how}); train images/s {sum(r['images_per_s'] for r in rows) / len(rows):.1f}\n\n"
        + table
        + f"\n\n![curves]({curves})\n"
    )
    write_doc(
        f"imagenette_recipe_{args.model}.md",
        f"Imagenette CPU recipe: {cfg.model.name}",
        body,
        " ".join(
            [
                f"python benchmarks/imagenette_recipe.py --model {args.model}",
                *(
                    [" ".join(["--recalibrate", *map(str, args.recalibrate)])]
                    if args.recalibrate != RECALIBRATE_DEFAULT
                    else []
                ),
                *([f"--out-dir {args.out_dir}"] if args.out_dir else []),
                *([f"--compare-with {args.compare_with}"] if args.compare_with else []),
                *args.overrides,
            ]
        ),
    )
    print_json_last(
        {
            "model": cfg.model.name,
            "top1_raw": round(last["val_top1"], 4),
            "top1_ema": round(last["val_ema_top1"], 4),
            "ema_minus_raw_pt": round(100 * (last["val_ema_top1"] - last["val_top1"]), 2),
            "best_top1": round(final["top1"], 4),
            "best_weights": kept,
            "minutes": round(minutes, 1),
            "target_top1": 0.80,
            "target_met": final["top1"] >= 0.80,
            "ema_at_least_raw": last["val_ema_top1"] >= last["val_top1"],
            "ema_vs_raw_paired": pair,
            "ema_recalibrated_top1": {str(n): round(v, 4) for n, v in recal.items()},
        }
        | ({"compared_with": other | {"top1": round(other["top1"], 4)}} if other else {})
    )


if __name__ == "__main__":
    main()

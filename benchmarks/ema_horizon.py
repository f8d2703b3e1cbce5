"""How long an EMA should remember, measured on real photos: several EMA copies of one run.

The EMA model of the paper (Section 4.1) averages the weights with momentum 5e-4 over 375k steps.
A run of a few thousand steps uses timm's warmup instead: the momentum at update ``n`` is
``max(m, (1 + n) ** -power)``, so the EMA remembers about ``(1 + n) ** power`` steps. With power
3/4 (the engine's default until this measurement; now timm's 2/3) the 30-epoch Imagenette CPU
recipe ended with the EMA 0.69 pt behind the raw weights (docs/imagenette_recipe_mobilevit_xxs_power075.md),
and re-estimating its BatchNorm statistics did not close the gap: the average still holds weights
from epochs the raw model has since improved on.

This script trains a run once and updates, beside the run's own EMA (``ema.warmup_power`` 3/4,
pinned by benchmarks/imagenette.py's recipe), one EMA copy per power in ``--powers``, all floored at the run's ``ema.momentum``. Every
copy averages the same raw trajectory, so their differences are the EMA rule's alone. Each is
evaluated at every epoch like the engine's EMA.

Default: the ours-vs-timm recipe of benchmarks/imagenette.py (MobileViT-XXS, 6 epochs at 112 px,
batch 64), seeds 0 and 1; its raw weights are those of that benchmark's runs with the same seed.
Each seed trains in its own folder; an interrupted run resumes with its EMA copies
(``ema_variants.pt`` beside ``resume.pt``). Prints, as its last line, a JSON object with each
power's final EMA - raw gap (mean over seeds); writes docs/ema_horizon.md. Run it alone.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path
from typing import Any

import torch
from _common import REPO, print_json_last, write_doc
from imagenette import DEFAULT_ROOT, Recipe, ours_overrides

from mobilevit.engine import Trainer, TrainingError, load_config
from mobilevit.engine.ema import ModelEMA

VARIANTS_NAME = "ema_variants.pt"
OWN_LABEL = " (the runs' own EMA)"


def key(power: float) -> str:
    return f"p{power:g}"


class EMASweepTrainer(Trainer):
    """The engine's trainer with extra EMA copies (timm's warmup at other powers) updated after
    every optimizer step, evaluated at every evaluation, and saved with the resume file."""

    def __init__(self, cfg: Any, powers: list[float]) -> None:
        super().__init__(cfg)
        e = cfg.ema
        self.variants = {p: ModelEMA(self.model, e.momentum, True, p, e.warmup_gamma) for p in powers}
        path = self.out / VARIANTS_NAME
        if self.resume_from is not None:
            if not path.is_file():
                raise TrainingError(
                    f"{self.out} resumes without {VARIANTS_NAME}: start it over in a new folder"
                )
            saved = torch.load(path, map_location="cpu", weights_only=True)
            for p, ema in self.variants.items():
                ema.load_state_dict(saved[key(p)])

    def optimizer_step(self, skip: bool = False) -> None:
        super().optimizer_step(skip)
        if not skip:
            for ema in self.variants.values():
                ema.update(self.model)

    def _evaluate_and_keep_best(self, row: dict[str, Any]) -> None:
        super()._evaluate_and_keep_best(row)
        for p, ema in self.variants.items():
            row[f"val_ema_{key(p)}_top1"] = self.evaluate(ema.module)["top1"]

    def write_resume(self) -> Path | None:
        torch.save({key(p): ema.state_dict() for p, ema in self.variants.items()}, self.out / VARIANTS_NAME)
        return super().write_resume()


def horizon_epochs(power: float, momentum: float, steps: int, steps_per_epoch: int) -> float:
    """The EMA's memory at the run's last step, ``1 / momentum``, in epochs."""
    return 1.0 / max(momentum, (1.0 + steps) ** -power) / steps_per_epoch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="Imagenette with train/ and val/")
    p.add_argument("--out", default=str(REPO / "runs" / "ema_horizon"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--powers",
        type=float,
        nargs="+",
        default=[2 / 3, 0.6, 0.5],
        help="warmup powers of the extra EMA copies (the run's own EMA keeps the recipe's 0.75)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise SystemExit(
            f"ema_horizon.py: {root} has no train/ and val/ folders (see ../shared/data/README.md)"
        )
    if any(not 0 < x <= 1 for x in args.powers):
        raise SystemExit(f"ema_horizon.py: --powers must lie in (0, 1], got {args.powers}")
    r = Recipe(epochs=args.epochs, img_size=args.img_size, batch=args.batch)
    base = Path(args.out) / f"e{r.epochs}_px{r.img_size}_b{r.batch}"
    runs = []
    for seed in args.seeds:
        cfg = load_config(None, ours_overrides("mobilevit_xxs", seed, root, base / f"s{seed}", r))
        trainer = EMASweepTrainer(cfg, args.powers)
        trainer.fit()
        rows = trainer.metrics.rows() if trainer.metrics else []
        if not rows or rows[-1]["epoch"] != r.epochs:
            raise SystemExit(
                f"ema_horizon.py: seed {seed} stopped before its last epoch; run it again to resume"
            )
        runs.append((seed, trainer, rows))

    own = cfg.ema.warmup_power
    powers = [own, *args.powers]
    col = {own: "val_ema_top1", **{x: f"val_ema_{key(x)}_top1" for x in args.powers}}
    steps, per_epoch = runs[0][1].state.global_step, runs[0][1].steps_per_epoch
    lines = [
        "| warmup power | memory at the end (epochs) | "
        + " | ".join(f"seed {s}: EMA top-1 (EMA - raw)" for s, _, _ in runs)
        + " | EMA - raw, mean |",
        "|---:|---:|" + "---:|" * (len(runs) + 1),
    ]
    figures: dict[str, Any] = {
        "steps": steps,
        "raw_top1": {str(s): round(rows[-1]["val_top1"], 4) for s, _, rows in runs},
    }
    for x in powers:
        gaps = [rows[-1][col[x]] - rows[-1]["val_top1"] for _, _, rows in runs]
        cells = [
            f"{100 * rows[-1][col[x]]:.2f}% ({100 * g:+.2f})"
            for (_, _, rows), g in zip(runs, gaps, strict=True)
        ]
        mean = statistics.mean(gaps)
        figures[f"ema_minus_raw_pt_{key(x)}"] = round(100 * mean, 2)
        lines.append(
            f"| {x:.4g}{OWN_LABEL if x == own else ''} | "
            f"{horizon_epochs(x, cfg.ema.momentum, steps, per_epoch):.2f} | "
            + " | ".join(cells)
            + f" | {100 * mean:+.2f} |"
        )
    curve = [
        "| epoch | raw, mean | " + " | ".join(f"EMA p={x:.4g}" for x in powers) + " |",
        "|---:|---:|" + "---:|" * len(powers),
    ]
    for i in range(r.epochs):
        raw = statistics.mean(rows[i]["val_top1"] for _, _, rows in runs)
        emas = [statistics.mean(rows[i][col[x]] for _, _, rows in runs) for x in powers]
        curve.append(f"| {i + 1} | {100 * raw:.2f}% | " + " | ".join(f"{100 * e:.2f}%" for e in emas) + " |")
    raws = ", ".join(f"seed {s} {100 * rows[-1]['val_top1']:.2f}%" for s, _, rows in runs)
    body = (
        f"MobileViT-XXS from scratch on Imagenette ({root.name}), benchmarks/imagenette.py's recipe: {r.epochs} "
        f"epochs at {r.img_size} px, batch {r.batch}, {steps} optimizer steps, cosine to {r.min_lr}. One run per "
        f"seed, its raw weights evaluated at the last epoch ({raws}), and one EMA copy per warmup power, all "
        f"floored at momentum {cfg.ema.momentum:g}, averaging the same trajectory. 'Memory' is 1 / momentum at "
        "the last step.\n\n"
        + "\n".join(lines)
        + "\n\nval top-1 by epoch, mean over the seeds:\n\n"
        + "\n".join(curve)
        + "\n"
    )
    cmd = (
        f"python benchmarks/ema_horizon.py --epochs {r.epochs} --img-size {r.img_size} --batch {r.batch} "
        f"--seeds {' '.join(map(str, args.seeds))} --powers {' '.join(f'{x:.4g}' for x in args.powers)}"
    )
    write_doc("ema_horizon.md", "EMA memory against run length (Imagenette)", body, cmd)
    print_json_last(figures)


if __name__ == "__main__":
    main()

"""Training throughput, ours vs timm, measured in the same run (issues 3 and 14).

images/s of forward + backward + AdamW step, batch 32, 256x256, fp32, CPU, 10 classes, no
dropout (timm's default). Paths, alternating round by round (order reversed every other round)
so machine noise hits all alike; the figure per path is the median over rounds:

- ``timm`` / ``timm_cl``: timm's model in a plain step, contiguous (its default) / channels-last;
- ``ours`` / ``ours_cl``: our model in the same plain step;
- ``engine``: our model through the training engine's own per-step code
  (``Trainer.process``: bad-sample accounting, the ranks' agreement, the task's label-smoothed
  loss, the non-finite check, backward, AdamW, the schedule, the EMA update) in the memory
  format the engine picks by default (``run.channels_last=auto``).

Prints, as its last line, a JSON object: ``ratio_vs_timm_<v>`` (engine / timm, each as its user
gets it by default; >= 1.0 is the target), ``ratio_same_format_<v>`` (ours / timm both
contiguous) and ``ratio_same_format_channels_last_<v>``, ``engine_overhead_<v>`` (engine /
ours in the engine's format); writes docs/train_throughput.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import print_json_last, write_doc

import mobilevit
from mobilevit.engine import Trainer, load_config
from mobilevit.engine.trainer import Window

NUM_CLASSES = 10


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, channels_last: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()

    def step() -> None:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def ours(name: str) -> torch.nn.Module:
    return mobilevit.create_model(
        name, num_classes=NUM_CLASSES, transformer_dropout=0.0, classifier_dropout=0.0
    )


def engine_step(name: str, x: torch.Tensor, y: torch.Tensor, workdir: Path):
    """The engine's per-step code on a fixed batch (a digits run supplies the trainer's setup)."""
    cfg = load_config(
        None,
        [
            "data.dataset=digits",
            f"data.root={workdir / 'digits'}",
            f"data.batch_size={x.shape[0]}",
            "data.num_workers=0",
            f"model.name={name}",
            "model.overrides={transformer_dropout: 0.0, classifier_dropout: 0.0}",
            "run.progress=false",
            f"run.out_dir={workdir / name}",
            "run.auto_resume=false",
        ],
    )
    trainer = Trainer(cfg)
    trainer.ddp.train()
    batch = {"images": x, "targets": y, "bad": [], "seen": x.shape[0]}
    window, sums = Window(), {}

    def step() -> None:
        trainer.process(batch, True, window, sums)

    return step, trainer.ctx.memory_format == torch.channels_last


def images_per_s(step, batch: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=2, help="timed steps per path per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    import timm

    torch.manual_seed(0)
    figures: dict[str, float | str] = {}
    rows = [
        "| model | timm img/s | timm channels-last | ours img/s | ours channels-last | engine img/s "
        "(format) | engine / timm | ours / timm, same format (contiguous / channels-last) | engine / ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            x = torch.rand(args.batch, 3, args.img_size, args.img_size)
            y = torch.randint(0, NUM_CLASSES, (args.batch,))

            engine, engine_cl = engine_step(name, x, y, Path(tmp))
            steps = {
                "timm": plain_step(timm.create_model(name, num_classes=NUM_CLASSES), x, y, False),
                "timm_cl": plain_step(timm.create_model(name, num_classes=NUM_CLASSES), x, y, True),
                "ours": plain_step(ours(name), x, y, False),
                "ours_cl": plain_step(ours(name), x, y, True),
                "engine": engine,
            }
            for s in steps.values():  # warm-up
                s()
            rates: dict[str, list[float]] = {k: [] for k in steps}
            for r in range(args.rounds):
                order = list(steps) if r % 2 == 0 else list(reversed(steps))
                for who in order:
                    rates[who].append(images_per_s(steps[who], args.batch, args.steps))
            med = {k: statistics.median(v) for k, v in rates.items()}
            short = name.removeprefix("mobilevit_")
            same = "ours_cl" if engine_cl else "ours"
            for k, v in med.items():
                figures[f"{k}_img_s_{short}"] = round(v, 2)
            figures[f"engine_format_{short}"] = "channels_last" if engine_cl else "contiguous"
            figures[f"ratio_vs_timm_{short}"] = round(med["engine"] / med["timm"], 3)
            figures[f"ratio_same_format_{short}"] = round(med["ours"] / med["timm"], 3)
            figures[f"ratio_same_format_channels_last_{short}"] = round(med["ours_cl"] / med["timm_cl"], 3)
            figures[f"engine_overhead_{short}"] = round(med["engine"] / med[same], 3)
            rows.append(
                f"| {name} | {med['timm']:.1f} | {med['timm_cl']:.1f} | {med['ours']:.1f} | {med['ours_cl']:.1f} | "
                f"{med['engine']:.1f} ({figures[f'engine_format_{short}']}) | "
                f"{figures[f'ratio_vs_timm_{short}']:.3f} | {figures[f'ratio_same_format_{short}']:.3f} / "
                f"{figures[f'ratio_same_format_channels_last_{short}']:.3f} | {figures[f'engine_overhead_{short}']:.3f} |"
            )
            print(rows[-1], flush=True)
    body = (
        f"Forward + backward + AdamW step, batch {args.batch}, {args.img_size}x{args.img_size}, fp32, CPU, "
        f"{NUM_CLASSES} classes; median of {args.rounds} alternating rounds of {args.steps} steps per path "
        f"(timm {timm.__version__}). No dropout in either model (timm's default). *engine* is our model "
        "through the training engine's own per-step code (`Trainer.process`: label-smoothed loss, the "
        "non-finite check, AdamW, schedule, EMA update) in the memory format the engine picks by default "
        "(`run.channels_last=auto`: channels-last where oneDNN runs the CPU convolutions). *engine / timm* "
        "compares what each user gets by default; the same-format columns compare the implementations.\n\n"
        + "\n".join(rows)
    )
    write_doc(
        "train_throughput.md",
        "Training throughput: ours vs timm",
        body,
        "python benchmarks/train_throughput.py",
    )
    print_json_last(figures)


if __name__ == "__main__":
    main()

"""Training throughput, ours vs timm, measured in the same run (issue 3).

images/s of forward + backward + AdamW step, batch 32, 256x256, fp32, CPU. The two models
alternate round by round so machine noise hits both alike; the figure per model is the median
over rounds. Prints, as its last line, a JSON object with ``ratio_vs_timm_xxs`` and
``ratio_vs_timm_s`` (ours / timm; >= 1.0 is the target); writes docs/train_throughput.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import print_json_last, write_doc

import mobilevit


def step_fn(model: torch.nn.Module, batch: int, size: int, channels_last: bool = False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
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


def images_per_s(step, batch: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variants", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--channels-last", action="store_true", help="also compare both in channels_last")
    args = p.parse_args()
    import timm

    torch.manual_seed(0)
    figures: dict[str, float] = {}
    rows = ["| model | memory format | ours img/s | timm img/s | ours / timm |", "|---|---|---:|---:|---:|"]
    for name in args.variants:
        ours_model = mobilevit.create_model(name, transformer_dropout=0.0, classifier_dropout=0.0)
        # the same work as timm's default model, which has no dropout (ours defaults to the
        # paper's transformer / classifier dropout, whose Bernoulli masks cost ~4% on CPU)
        steps = {
            "ours": step_fn(ours_model, args.batch, args.img_size),
            "timm": step_fn(timm.create_model(name, pretrained=False), args.batch, args.img_size),
        }
        if args.channels_last:
            steps["ours_cl"] = step_fn(
                mobilevit.create_model(name, transformer_dropout=0.0, classifier_dropout=0.0),
                args.batch,
                args.img_size,
                channels_last=True,
            )
            steps["timm_cl"] = step_fn(
                timm.create_model(name, pretrained=False), args.batch, args.img_size, True
            )
        for s in steps.values():  # warm-up
            s()
        rates: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(args.rounds):
            order = list(steps) if r % 2 == 0 else list(reversed(steps))
            for who in order:
                rates[who].append(images_per_s(steps[who], args.batch, args.steps))
        med = {k: statistics.median(v) for k, v in rates.items()}
        short = name.removeprefix("mobilevit_")
        figures[f"ours_img_s_{short}"] = round(med["ours"], 2)
        figures[f"timm_img_s_{short}"] = round(med["timm"], 2)
        figures[f"ratio_vs_timm_{short}"] = round(med["ours"] / med["timm"], 3)
        rows.append(
            f"| {name} | contiguous (both defaults) | {med['ours']:.1f} | {med['timm']:.1f} | "
            f"{med['ours'] / med['timm']:.3f} |"
        )
        print(rows[-1], flush=True)
        if args.channels_last:
            figures[f"ratio_vs_timm_channels_last_{short}"] = round(med["ours_cl"] / med["timm_cl"], 3)
            figures[f"ratio_ours_channels_last_vs_timm_default_{short}"] = round(
                med["ours_cl"] / med["timm"], 3
            )
            rows.append(
                f"| {name} | channels_last (both) | {med['ours_cl']:.1f} | {med['timm_cl']:.1f} | "
                f"{med['ours_cl'] / med['timm_cl']:.3f} |"
            )
            print(rows[-1], flush=True)
    body = (
        f"Forward + backward + AdamW step, batch {args.batch}, {args.img_size}x{args.img_size}, fp32, CPU; "
        f"median of {args.rounds} alternating rounds of {args.steps} steps (timm {timm.__version__}). Both models "
        "without dropout (timm's default; the paper's dropout adds Bernoulli masks that cost ~4% here).\n\n"
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

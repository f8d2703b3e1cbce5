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


def step_fn(model: torch.nn.Module, batch: int, size: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
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
    args = p.parse_args()
    import timm

    torch.manual_seed(0)
    figures: dict[str, float] = {}
    rows = ["| model | ours img/s | timm img/s | ours / timm |", "|---|---:|---:|---:|"]
    for name in args.variants:
        steps = {
            # the same work as timm's default model, which has no dropout (ours defaults to the
            # paper's transformer / classifier dropout, whose Bernoulli masks cost ~4% on CPU)
            "ours": step_fn(
                mobilevit.create_model(name, transformer_dropout=0.0, classifier_dropout=0.0),
                args.batch,
                args.img_size,
            ),
            "timm": step_fn(timm.create_model(name, pretrained=False), args.batch, args.img_size),
        }
        for s in steps.values():  # warm-up
            s()
        rates: dict[str, list[float]] = {"ours": [], "timm": []}
        for r in range(args.rounds):
            order = ["ours", "timm"] if r % 2 == 0 else ["timm", "ours"]
            for who in order:
                rates[who].append(images_per_s(steps[who], args.batch, args.steps))
        ours, ref = statistics.median(rates["ours"]), statistics.median(rates["timm"])
        short = name.removeprefix("mobilevit_")
        figures[f"ours_img_s_{short}"] = round(ours, 2)
        figures[f"timm_img_s_{short}"] = round(ref, 2)
        figures[f"ratio_vs_timm_{short}"] = round(ours / ref, 3)
        rows.append(f"| {name} | {ours:.1f} | {ref:.1f} | {ours / ref:.3f} |")
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

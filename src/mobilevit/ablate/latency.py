"""Params, FLOPs and batch-1 latency of a study's variants (the patch-size study's speed column)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any


def latency_sizes(img_size: int) -> list[int]:
    """The study's own input size and, when smaller, the paper's 256 px."""
    return sorted({img_size, max(img_size, 256)})


def measure_latency_table(
    manifest: dict[str, Any], rounds: int = 3, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Params, FLOPs and batch-1 latency of every variant, in this process, variants interleaved.

    Each of ``rounds`` rounds times every variant once (``latency_iters`` passes after a
    warm-up) and the median of the rounds' medians is kept, so slow drifts of a shared machine
    hit all variants alike.

    Args:
        manifest: the study's record: ``model``, ``num_classes``, ``img_size``, ``latency_iters``,
            optional ``threads`` and ``variants`` (each with ``name`` and ``model_overrides``).
        rounds: how many times every variant is timed.
        echo: where the progress line goes.

    Returns:
        ``machine``, ``sizes`` (`latency_sizes`), ``rounds``, ``iters`` and ``variants``: per
        variant its ``params`` and, per size, ``mflops@SIZE`` and ``p50_ms@SIZE``.
    """
    import torch

    from ..bench import count_flops, count_params, machine_info, measure_latency
    from ..models import create_model

    if manifest.get("threads"):
        torch.set_num_threads(int(manifest["threads"]))
    sizes = latency_sizes(int(manifest["img_size"]))
    models = {
        v["name"]: create_model(
            manifest["model"], num_classes=manifest["num_classes"], **v["model_overrides"]
        ).eval()
        for v in manifest["variants"]
    }
    echo(f"timing {len(models)} variants at {sizes} px, batch 1, {torch.get_num_threads()} threads")
    p50: dict[str, dict[int, list[float]]] = {n: {s: [] for s in sizes} for n in models}
    for _ in range(rounds):
        for name, model in models.items():
            for s in sizes:
                lat = measure_latency(model, (s, s), batch=1, warmup=3, iters=int(manifest["latency_iters"]))
                p50[name][s].append(lat.p50_ms)
    variants = {}
    for name, model in models.items():
        variants[name] = {
            "params": count_params(model),
            **{f"mflops@{s}": count_flops(model, (s, s)) / 1e6 for s in sizes},
            **{f"p50_ms@{s}": statistics.median(p50[name][s]) for s in sizes},
        }
    return {
        "machine": machine_info(),
        "sizes": sizes,
        "rounds": rounds,
        "iters": manifest["latency_iters"],
        "variants": variants,
    }

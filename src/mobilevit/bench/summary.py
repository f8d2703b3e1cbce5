"""Model size and speed: parameters, FLOPs (torch's flop counter) and CPU latency.

FLOPs include the attention matmuls: PyTorch's flop counter does not know the CPU flash
attention kernel that ``scaled_dot_product_attention`` dispatches to, so it is registered here
with the same formula torch uses for the other SDPA kernels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter

from ..models import create_model
from ..timing import measure_latency


def _cpu_flash_sdpa_flops(query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_sdpa_flops}


def count_params(model: nn.Module) -> int:
    """The number of parameter elements of ``model`` (buffers such as BN statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, img_size: tuple[int, int] = (256, 256), batch: int = 1) -> int:
    """Forward FLOPs (2 x multiply-accumulates) of one pass at ``img_size``.

    Args:
        model: the network; run once in eval mode on random input, its training mode restored.
        img_size: ``(height, width)``, pixels.
        batch: images in the pass (the count is for the whole batch).

    Returns:
        The FLOPs, attention matmuls included.
    """
    was_training = model.training
    model.eval()
    x = torch.rand(batch, 3, *img_size)
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class ModelRow:
    model: str
    params: int
    gflops: float
    gmacs: float
    p50_ms: float
    p90_ms: float


def summarize_models(
    names: list[str], img_size: tuple[int, int] = (256, 256), iters: int = 20, warmup: int = 3
) -> list[ModelRow]:
    """Parameters, GFLOPs and batch-1 latency of each registered model in ``names``.

    Args:
        names: registered model names, built with random weights.
        img_size: ``(height, width)`` of the FLOP count and the timed input, pixels.
        iters: timed forward passes per model.
        warmup: untimed passes before them.

    Returns:
        One `ModelRow` per name, in order (GMACs = GFLOPs / 2; p50 / p90 in ms, fp32 eager).
    """

    rows = []
    for name in names:
        model = create_model(name).eval()
        flops = count_flops(model, img_size)
        lat = measure_latency(model, img_size, batch=1, warmup=warmup, iters=iters)
        rows.append(ModelRow(name, count_params(model), flops / 1e9, flops / 2e9, lat.p50_ms, lat.p90_ms))
    return rows


def format_table(rows: list[ModelRow], img_size: tuple[int, int]) -> str:
    """Markdown: one line per model, ``img_size`` (the one the rows were measured at) in the header."""
    head = f"| model | params | GFLOPs @{img_size[0]}x{img_size[1]} | GMACs | batch-1 p50 ms | p90 ms |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params:,} | {r.gflops:.3f} | {r.gmacs:.3f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} |"
        )
    return "\n".join(lines)


def rows_as_dicts(rows: list[ModelRow]) -> list[dict[str, Any]]:
    """The rows as plain dicts (for JSON)."""
    return [asdict(r) for r in rows]

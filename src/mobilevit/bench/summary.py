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
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, img_size: tuple[int, int] = (256, 256), batch: int = 1) -> int:
    """Forward FLOPs (2 x multiply-accumulates) of one pass at ``img_size``."""
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
    """Parameters, GFLOPs and batch-1 latency of each registered model in ``names``."""

    rows = []
    for name in names:
        model = create_model(name).eval()
        flops = count_flops(model, img_size)
        lat = measure_latency(model, img_size, batch=1, warmup=warmup, iters=iters)
        rows.append(ModelRow(name, count_params(model), flops / 1e9, flops / 2e9, lat.p50_ms, lat.p90_ms))
    return rows


def format_table(rows: list[ModelRow], img_size: tuple[int, int]) -> str:
    head = f"| model | params | GFLOPs @{img_size[0]}x{img_size[1]} | GMACs | batch-1 p50 ms | p90 ms |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params:,} | {r.gflops:.3f} | {r.gmacs:.3f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} |"
        )
    return "\n".join(lines)


def rows_as_dicts(rows: list[ModelRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]

"""Model size and speed: parameters, FLOPs (torch's flop counter) and CPU latency.

FLOPs include the attention matmuls: PyTorch's flop counter does not know the CPU flash
attention kernel that ``scaled_dot_product_attention`` dispatches to, so it is registered here
with the same formula torch uses for the other SDPA kernels.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter


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
class Latency:
    """Per-pass wall time (ms) of ``batch`` images: median, 90th percentile, mean over ``runs`` passes."""

    batch: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    runs: int

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / self.p50_ms

    @property
    def ms_per_image(self) -> float:
        return self.p50_ms / self.batch


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    warmup: int = 3,
    iters: int = 20,
    min_seconds: float = 0.0,
) -> Latency:
    """Wall-clock time per forward pass (eval mode, fp32), median and 90th percentile."""
    model.eval()
    x = torch.rand(batch, 3, *img_size)
    for _ in range(warmup):
        model(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return summarize_times(times, batch)


def summarize_times(times_ms: list[float], batch: int) -> Latency:
    """Median, 90th percentile and mean of per-pass wall times (ms) at ``batch`` images per pass."""
    if not times_ms:
        raise ValueError("no timings to summarize")
    times = sorted(times_ms)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Latency(batch, statistics.median(times), p90, statistics.fmean(times), len(times))


def machine_info() -> dict[str, Any]:
    """CPU model, thread count and versions, for the header of every benchmark table."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")
    return {
        "cpu": cpu,
        "extensions": [f for f in wanted if f in flags],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


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
    from .registry import create_model

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

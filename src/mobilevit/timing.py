"""Timing primitives, below both ``mobilevit.export`` (int8 is kept only where it is faster) and
``mobilevit.bench``: latency summaries, the machine header, alternating-round measurement of
several ways to run a model, and the machine's matmul peak. Imports nothing of this package."""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "InferencePath",
    "Latency",
    "machine_info",
    "measure_alternating",
    "measure_latency",
    "peak_matmul_gflops",
    "summarize_times",
]


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
    """CPU model, thread count and versions, for the header of every benchmark table.

    On x86 Linux the CPU name carries its family and model numbers: a name such as "AMD EPYC"
    covers generations whose kernels differ (family 25 is Zen 3 / Zen 4, 26 is Zen 5), and the
    runtimes' ratios differ with them."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    ident: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu in ("", platform.machine()):
                    cpu = value.strip()
                elif key in ("cpu family", "model"):
                    ident.setdefault(key, value.strip())
                elif key == "flags":
                    flags = value.split()
                    break
    except OSError:
        pass
    if "cpu family" in ident and "model" in ident:
        cpu = f"{cpu}, family {ident['cpu family']} model {ident['model']}"
    wanted = ("avx2", "avx_vnni", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")
    return {
        "cpu": cpu,
        "extensions": [f for f in wanted if f in flags],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def first_line(e: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters: why a path was skipped."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


@dataclass
class InferencePath:
    """One way to run a model: ``fn`` maps an input batch (in ``memory_format``) to logits.

    ``skipped`` holds the reason when the path could not be built here (e.g. torch.compile
    without a C++ compiler); such a path has no ``fn`` and is reported, not timed.
    ``setup_s`` is the time spent building it (export, session creation, compilation).
    """

    name: str
    owner: str
    fn: Callable[[torch.Tensor], torch.Tensor] | None
    memory_format: torch.memory_format = torch.contiguous_format
    precision: str = "fp32"
    setup_s: float = 0.0
    skipped: str | None = None

    @property
    def key(self) -> str:
        return f"{self.owner}/{self.name}"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this path's memory format."""
        return x.contiguous(memory_format=self.memory_format)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fn is None:
            raise RuntimeError(f"path {self.key} was skipped: {self.skipped}")
        return self.fn(x)


def measure_alternating(
    paths: list[InferencePath], x: torch.Tensor, iters: int = 10, rounds: int = 5, warmup: int = 2
) -> dict[str, Latency]:
    """Per-pass latency of each (not skipped) path on ``x``, keyed by ``path.key``.

    After ``warmup`` passes of every path, each of ``rounds`` rounds times ``iters`` passes of
    every path, the order rotated by one each round; p50 / p90 are over all rounds' passes.
    """
    if iters < 1 or rounds < 1:
        raise ValueError(f"iters and rounds must be >= 1, got {iters} and {rounds}")
    active = [p for p in paths if p.fn is not None]
    inputs = {p.key: p.prepare(x) for p in active}
    times: dict[str, list[float]] = {p.key: [] for p in active}
    with torch.inference_mode():
        for p in active:
            for _ in range(warmup):
                p(inputs[p.key])
        for r in range(rounds):
            shift = r % max(1, len(active))
            for p in active[shift:] + active[:shift]:
                xp, samples = inputs[p.key], times[p.key]
                for _ in range(iters):
                    t0 = time.perf_counter()
                    p(xp)
                    samples.append((time.perf_counter() - t0) * 1000.0)
    return {key: summarize_times(samples, x.shape[0]) for key, samples in times.items()}


def peak_matmul_gflops(threads: int | None = None, n: int = 2048, reps: int = 10) -> float:
    """The machine's fp32 matmul rate: best of ``reps`` ``torch.mm`` of n x n matrices, in GFLOP/s.

    Runs with ``threads`` torch threads (default: the current setting), after a warm-up of at
    least 0.2 s so that the clock has settled.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
        out = torch.empty(n, n)
        start = time.perf_counter()
        while time.perf_counter() - start < 0.2:  # warm-up
            torch.mm(a, b, out=out)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
        return 2.0 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)

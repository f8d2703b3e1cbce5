"""torchrun + DistributedDataParallel plumbing (gloo on CPU, nccl on GPU). Rank 0 logs and writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA where available, else the CPU; ``cpu`` / ``cuda`` as asked."""
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("run.device=cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Read torchrun's environment; start the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, device)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over every process, in place (a no-op in a single process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op in a single process)."""
    if info.distributed:
        dist.barrier()


T = TypeVar("T")


def place_model(
    model: torch.nn.Module, info: DistInfo, channels_last: bool = False
) -> tuple[torch.nn.Module, torch.nn.Module, torch.memory_format]:
    """Move ``model`` to the run's device and memory format and wrap it in DDP when distributed.

    Args:
        model: the model to place.
        info: the process's place in the run.
        channels_last: channels-last memory.

    Returns:
        ``(model, ddp_or_model, memory_format)``: train through the second, save the first.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(info.device).to(memory_format=fmt)
    wrapped: torch.nn.Module = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            model, device_ids=[info.device] if info.device.type == "cuda" else None
        )
    return model, wrapped, fmt


def main_first(info: DistInfo, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (e.g. write a dataset once, then read it)."""
    if info.is_main:
        out = fn()
    barrier(info)
    if not info.is_main:
        out = fn()
    return out


def cleanup(info: DistInfo) -> None:
    """Tear down the process group this package started, if any."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()

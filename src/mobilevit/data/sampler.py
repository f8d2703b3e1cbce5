"""The multi-scale variable-batch sampler of the paper (Section 4.1, Figure 5).

Each step draws a resolution (h, w) from a set and a batch size that keeps the pixel count of
the base resolution constant (``base_batch * base_h * base_w / (h * w)``; the paper-era code never
goes below ``base_batch``). The draw uses an RNG seeded by (seed, epoch), so every DDP rank
takes the same sequence of shapes, while the indices are a seeded shuffle strided by rank:
ranks never share a sample and all of them run the same number of steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SampleKey:
    """What the dataset receives for one sample: the crop size and a per-sample RNG seed."""

    index: int
    height: int
    width: int
    seed: int


@contextmanager
def sample_rng(seed: int) -> Iterator[None]:
    """Torch's CPU random stream seeded with ``seed`` inside the block, restored after it: what a
    sample's augmentation draws from. The same stream as ``torch.manual_seed(seed)`` gives on the
    CPU, without its per-call cost of queueing the seed for every CUDA device (about 0.25 ms in a
    CUDA build, per sample)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def batch_size_for(
    h: int, w: int, base: tuple[int, int], base_batch: int, never_below_base: bool = True
) -> int:
    """The batch size at ``h x w`` that keeps the pixels per batch of ``base_batch`` images at ``base``.

    Args:
        h: crop height, pixels.
        w: crop width, pixels.
        base: ``(height, width)`` the base batch size is set for.
        base_batch: the batch size at ``base``.
        never_below_base: never return less than ``base_batch`` (larger crops keep the base
            batch); otherwise at least 1.

    Returns:
        ``int(base_batch * base_h * base_w / (h * w))``, floored as above.
    """
    size = int(base_batch * base[0] * base[1] / (h * w))
    return max(size, base_batch) if never_below_base else max(size, 1)


class MultiScaleBatchSampler:
    """Yields lists of `SampleKey` with a new (h, w, batch) each step.

    With one resolution it is a plain shuffled (or sequential) fixed-size batch sampler whose
    keys still carry the crop size and the per-sample seed.
    """

    def __init__(
        self,
        num_samples: int,
        base_size: tuple[int, int],
        base_batch: int,
        resolutions: Sequence[int | tuple[int, int]] | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        never_below_base: bool = True,
        pad: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("MultiScaleBatchSampler needs a non-empty dataset")
        if base_batch < 1:
            raise ValueError(f"base_batch must be >= 1, got {base_batch}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.num_samples = num_samples
        self.base_size = base_size
        self.base_batch = base_batch
        res = resolutions or [base_size]
        self.resolutions = [(r, r) if isinstance(r, int) else (int(r[0]), int(r[1])) for r in res]
        if any(min(r) < 1 for r in self.resolutions):
            raise ValueError(f"resolutions must be positive, got {self.resolutions}")
        self.shapes = [
            (h, w, batch_size_for(h, w, base_size, base_batch, never_below_base)) for h, w in self.resolutions
        ]
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation; ``start_step`` skips batches already done (resume)."""
        self.epoch, self.start_step = epoch, start_step

    def _rank_indices(self) -> list[int]:
        order = list(range(self.num_samples))
        if self.shuffle:
            random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        if self.pad:  # every rank gets as many samples, so all run the same number of steps
            per_rank = math.ceil(self.num_samples / self.world_size)
            order += order[: per_rank * self.world_size - len(order)]
        return order[self.rank :: self.world_size]

    def _plan(self) -> list[tuple[int, int, list[int]]]:
        indices = self._rank_indices()
        rng = random.Random(self.seed * 7_919 + self.epoch)  # same on every rank
        plan, pos = [], 0
        while pos < len(indices):
            h, w, b = rng.choice(self.shapes) if self.shuffle else self.shapes[0]
            chunk = indices[pos : pos + b]
            pos += b
            if len(chunk) < b and self.drop_last and plan:
                break
            plan.append((h, w, chunk))
        return plan

    def __iter__(self) -> Iterator[list[SampleKey]]:
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for h, w, chunk in self._plan()[self.start_step :]:
            yield [SampleKey(i, h, w, (base + i) % (2**63)) for i in chunk]

    def __len__(self) -> int:
        return len(self._plan()) - self.start_step

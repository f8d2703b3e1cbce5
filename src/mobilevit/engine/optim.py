"""AdamW with per-iteration linear warmup then cosine decay (Section 4.1 of the paper)."""

from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW with weight decay on all parameters, as the official recipe does.

    Args:
        model: the model whose trainable parameters are optimized.
        lr: the learning rate.
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's betas.

    Returns:
        The optimizer.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


def warmup_cosine(
    step: int, total: int, peak: float, end: float, warmup_steps: int, warmup_start: float
) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total``.

    Args:
        step: the optimizer step, 0-based.
        total: the run's optimizer steps.
        peak: the rate after the warmup.
        end: the rate at the end of the cosine.
        warmup_steps: the linear warmup's steps.
        warmup_start: the rate at step 0.

    Returns:
        The learning rate.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (peak - warmup_start) * step / warmup_steps
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return end + 0.5 * (peak - end) * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    peak: float,
    end: float,
    warmup_steps: int,
    warmup_start: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimizer step (the base lr of the optimizer is ``peak``).

    Args:
        optimizer: its base rate is ``peak``.
        total_steps: the run's optimizer steps.
        peak: the rate after the warmup.
        end: the rate at the end of the cosine.
        warmup_steps: the linear warmup's steps (at most ``total_steps - 1``).
        warmup_start: the rate at step 0.

    Returns:
        The scheduler.
    """
    warmup_steps = min(warmup_steps, max(0, total_steps - 1))

    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps, peak, end, warmup_steps, warmup_start) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

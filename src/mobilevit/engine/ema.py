"""Exponential moving average of weights *and* BatchNorm buffers, updated every step.

The paper reports the EMA model (Section 4.1): ``ema = (1 - m) * ema + m * w`` with m = 5e-4.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, momentum: float = 5e-4, warmup: bool = False) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.warmup = warmup
        self.updates = 0

    def current_momentum(self) -> float:
        if not self.warmup:
            return self.momentum
        # ramp: average everything seen so far at first, then settle at ``momentum``
        return max(self.momentum, 1.0 / (self.updates + 1))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        m = self.current_momentum()
        ema_state = self.module.state_dict()
        floats_e, floats_m = [], []
        for key, value in model.state_dict().items():
            target = ema_state[key]
            if target.is_floating_point():
                floats_e.append(target)
                floats_m.append(value.detach())
            else:
                target.copy_(value)  # num_batches_tracked
        torch._foreach_lerp_(floats_e, floats_m, m)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


@torch.no_grad()
def recalibrated_copy(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    num_batches: int,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are re-estimated on ``num_batches`` inputs
    ("precise BN"). Used for the EMA model of short runs, where the average of BN statistics no
    longer matches the averaged weights. The global RNG (dropout) is left untouched.
    ``forward(model, x)`` runs a batch (default ``model(x)``; a detector runs its raw head)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.random.fork_rng(devices=[]):
        for i, x in enumerate(batches):
            if i >= num_batches:
                break
            x = x.to(device, memory_format=memory_format)
            model(x) if forward is None else forward(model, x)
    return model.eval()

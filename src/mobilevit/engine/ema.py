"""Exponential moving average of weights *and* BatchNorm buffers, updated every optimizer step.

The paper reports the EMA model (Section 4.1): ``ema = (1 - m) * ema + m * w`` with m = 5e-4,
for a run of 375k steps. A short run needs a warmup that forgets the random start: with
``warmup`` the momentum at update ``n`` is ``max(m, (1 + n / gamma) ** -power)`` (timm's
``ModelEmaV3`` warmup, ``decay = 1 - (1 + n / gamma) ** -power``, with timm's default power 2/3).
Its averaging horizon grows like ``n ** power``, a shrinking fraction of the run, so the weights
of the first steps carry a weight of about ``exp(-3 (n ** (1/3) - 1))`` (2e-12 after 1,000 steps),
whatever the run's length; ``m`` only takes over once ``n > m ** (-1 / power)`` (89k steps for
the paper's 5e-4). The plain ``1 / (n + 1)`` ramp, by contrast, is the mean of *every* weight since
the start until ``n = 1 / m``, random initialisation included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """An EMA copy of ``model`` (in eval mode, no gradients), updated with `update`: the
    paper's constant ``momentum``, or with ``warmup`` (the training config's default) timm's ramp.
    Update ``n`` (0-based) uses what timm's ``ModelEmaV3.get_decay(n + 1)`` gives, as timm's own
    training loop calls it."""

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 5e-4,
        warmup: bool = False,
        warmup_power: float = 2 / 3,
        warmup_gamma: float = 1.0,
    ) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.warmup = warmup
        self.warmup_power = warmup_power
        self.warmup_gamma = warmup_gamma
        self.updates = 0

    def current_momentum(self) -> float:
        """The weight of the live model in the next average (1.0 before the first update)."""
        if not self.warmup:
            return self.momentum
        return max(self.momentum, (1.0 + self.updates / self.warmup_gamma) ** -self.warmup_power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average ``model``'s weights and floating buffers into the EMA copy (integer buffers are copied)."""
        m = self.current_momentum()
        self.updates += 1
        # parameters and buffers in module order (cheaper per step than two state_dict()s, which
        # run hooks and build every key); the copy has the same structure as the live model
        floats_e, floats_m = [], []
        pairs = zip(
            [*self.module.parameters(), *self.module.buffers()],
            [*model.parameters(), *model.buffers()],
            strict=True,
        )
        for target, value in pairs:
            if target.is_floating_point():
                floats_e.append(target)
                floats_m.append(value.detach())
            else:
                target.copy_(value)  # num_batches_tracked
        torch._foreach_lerp_(floats_e, floats_m, m)

    def state_dict(self) -> dict[str, Any]:
        """The EMA copy's tensors, the update count and the momentum (for resume files)."""
        return {"module": self.module.state_dict(), "updates": self.updates, "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
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
    ``forward(model, x)`` runs a batch (default ``model(x)``; a detector runs its raw head).

    Args:
        model: the model whose copy is recalibrated.
        batches: image batches (the training split's).
        num_batches: how many of them to run.
        device: where to run them.
        memory_format: the run's memory format.
        forward: how to run a batch (default ``model(x)``).

    Returns:
        The recalibrated copy, in eval mode.
    """
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
